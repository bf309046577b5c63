#pragma once
#include <pybind11/pybind11.h>

namespace pyadv {
// Adds the submodule `emulated` to the extension module.
void register_emulated(pybind11::module_& parent);
}  // namespace pyadv
