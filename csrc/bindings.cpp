// The op schemas of the pyadv torch library and the pybind11 module pyadv._C that loads
// them. No math here: each kernel registers its own CPU / CUDA implementation.
#include <torch/extension.h>
#include <torch/library.h>

#include "build_config.h"
#include "common/cpu_isa.h"
#include "common/value_checks.h"
#include "emu/emu_module.h"
#include "optim/lbfgsb_op.h"

TORCH_LIBRARY(pyadv, m) {
  m.def("pixel_fi(Tensor jac, Tensor probs, Tensor target, float eps=0., float rank_tol=0.) -> Tensor");
  m.def("fi_accumulate(Tensor jac, Tensor probs, Tensor target, int k_offset, float eps, Tensor(a!) num, "
        "Tensor(b!) den) -> ()");
  m.def("fi_finish(Tensor num, Tensor den, float rank_tol=0.) -> Tensor");
  m.def("fi_group_accumulate(Tensor jac, Tensor probs, Tensor target, int k_offset, float eps, Tensor(a!) num, "
        "Tensor(b!) den) -> ()");
  m.def("fi_group_finish(Tensor num, Tensor den, float rank_tol=0.) -> Tensor");
  m.def("pso_step(Tensor(a!) pos, Tensor(b!) vel, Tensor pbest, Tensor gbest, Tensor lo, Tensor hi, Tensor? ids, "
        "float w, float c1, float c2, int seed, int step, int boundary, float vmax_frac) -> ()");
  m.def("swarm_best(Tensor pos, Tensor fitness, Tensor(a!) pbest, Tensor(b!) pbest_fit, Tensor(c!) gbest, "
        "Tensor(d!) gbest_fit) -> ()");
  m.def("de_trial(Tensor pop, Tensor best, Tensor lo, Tensor hi, Tensor? int_mask, Tensor? ids, float F, float CR, "
        "int strategy, int bounds, int seed, int step) -> Tensor");
  m.def("de_select(Tensor trial, Tensor trial_fitness, Tensor(a!) pop, Tensor(b!) fitness) -> ()");
  m.def("sparse_perturb(Tensor base, Tensor idx, Tensor values, int n_begin, int n_end) -> Tensor");
  m.def("pixel_replace(Tensor base, Tensor candidates, int n_begin, int n_end) -> Tensor");
  m.def("ssim_forward(Tensor x, Tensor y, int win, float sigma, float K1, float K2, float data_range, bool want_map, "
        "bool want_partials) -> (Tensor, Tensor, Tensor)");
  m.def("ssim_backward(Tensor grad, Tensor x, Tensor y, int win, float sigma, float K1, float K2, float data_range) "
        "-> (Tensor, Tensor)");
  m.def("warp_perspective(Tensor img, Tensor M, int out_h, int out_w) -> Tensor");
  m.def("ecc_prefilter(Tensor tmpl, Tensor img, Tensor kernel) -> (Tensor, Tensor)");
  m.def("ecc_moments(Tensor img, Tensor tmpl, Tensor M, int motion, int margin, Tensor? ids=None) -> Tensor");
  m.def("ecc_solve(Tensor img, Tensor tmpl, Tensor M, int motion, int margin, int iters, float eps, bool safeguards, "
        "bool from_identity, bool coarse=False) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("sparse_perturb_out(Tensor base, Tensor idx, Tensor values, int n_begin, int n_end, Tensor(a!) out) -> ()");
  m.def("pixel_replace_out(Tensor base, Tensor candidates, int n_begin, int n_end, Tensor(a!) out) -> ()");
  m.def("lbfgsb_start(Tensor(a!) x, Tensor(b!) ws, Tensor(c!) iws, Tensor lower, Tensor upper, Tensor rows, "
        "Tensor x0, int m) -> ()");
  m.def("lbfgsb_step(Tensor(a!) x, Tensor(b!) ws, Tensor(c!) iws, Tensor lower, Tensor upper, Tensor rows, Tensor f, "
        "Tensor g, int m, int max_iter, int max_eval, int max_ls, float factr, float pgtol) -> ()");
  m.def("sparse_conv_stage(Tensor delta, Tensor slots, Tensor outpos, Tensor base, Tensor weight, int in_w, "
        "int pad_h, int pad_w, int pool, bool relu) -> Tensor");
}

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
  m.doc() = "pyadv compiled kernels; the ops live in torch.ops.pyadv, typed wrappers in pyadv.ops";
  m.def("build_info", [] {
    py::dict d;
    d["version"] = PYADV_VERSION;
    d["cuda_compiled"] = bool(PYADV_WITH_CUDA);
    d["cuda_archs"] = PYADV_CUDA_ARCHS;
    d["emulator"] = true;
    d["compiler"] = PYADV_COMPILER;
    d["build_type"] = PYADV_BUILD_TYPE;
    d["torch_version"] = PYADV_TORCH_VERSION;
    d["cxx11_abi"] = bool(PYADV_CXX11_ABI);
    py::list isas;
    for (auto isa : pyadv::cpu_isa_compiled()) isas.append(pyadv::cpu_isa_name(isa));
    d["cpu_isa_compiled"] = isas;
    return d;
  }, "What this build compiled in.");
  m.def("cpu_isa", [] { return std::string(pyadv::cpu_isa_name(pyadv::cpu_isa())); },
        "The instruction-set variant the CPU kernels use now.");
  m.def("cpu_isa_supported", [] {
    py::list l;
    for (auto isa : pyadv::cpu_isa_compiled())
      if (pyadv::cpu_isa_supported(isa)) l.append(pyadv::cpu_isa_name(isa));
    return l;
  }, "Compiled variants this CPU can run.");
  m.def("set_cpu_isa", &pyadv::set_cpu_isa, py::arg("name"),
        "Selects the CPU kernel variant (baseline, avx2, avx512) for this process.");
  m.def("set_check_inputs", [](bool on) { return pyadv::cuda_value_checks().exchange(on); }, py::arg("on"),
        "Whether ops check the values of CUDA inputs (a host sync per call); returns the previous setting.");
  m.def("check_inputs", [] { return pyadv::cuda_value_checks().load(); });
  m.def("lbfgsb_workspace", &pyadv::lbfgsb_workspace, py::arg("n"), py::arg("m"),
        "(float64, int32) entries per problem of the batched L-BFGS-B's ws and iws.");
  pyadv::register_emulated(m);
}
