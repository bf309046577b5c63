// The emulator's self-test kernels compiled by g++ (pyadv::emulated::selftest).
#include "../common/emu_selftest.cu"
