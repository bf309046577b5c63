// The batched L-BFGS-B's workspace sizes, for the pybind11 helper that lets Python allocate a
// state (the ops themselves live in lbfgsb_op.cpp).
#pragma once

#include <cstdint>
#include <utility>

namespace pyadv {

// (doubles, int32s) of one problem's rows of ws and iws, for n variables and m corrections.
std::pair<int64_t, int64_t> lbfgsb_workspace(int64_t n, int64_t m);

}  // namespace pyadv
