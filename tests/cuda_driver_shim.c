/* cuda_driver_shim.c: a stand-in libcuda.so.1 for test_cudnn_sdpa_graph on a machine without a GPU.
 *
 * cuDNN compiles the kernel of a runtime-fused engine (its flash attention among them) only when it
 * can load a CUDA driver library. The toolkit ships a stub driver (lib64/stubs/libcuda.so) whose
 * every call fails. This shim is that stub, except for the few calls that load a compiled module:
 * it reads the kernel's name out of the image (cuDNN names its kernels after the engine, e.g.
 * "cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_..."), keeps it, then fails the load as
 * the stub would. The test reads the names back through vt_shim_kernel_count / vt_shim_kernel, to
 * check which engine cuDNN's heuristics ranked first for each of vt's graphs.
 *
 * cuDNN looks the driver's functions up by name (dlsym) and through cuGetProcAddress. The names it
 * asks dlsym for (cuDNN 9.19, read off its log) are forwarded to the stub by x86-64 tail jumps, so
 * no signature is restated; cuGetProcAddress answers the module-loading names itself and passes
 * the rest on. VT_CUDA_STUB_PATH (set by CMake) is the stub's path.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <string.h>

#if !defined(__x86_64__)
#error "cuda_driver_shim.c forwards calls with x86-64 jumps"
#endif

enum { kStubLibrary = 34 }; /* CUDA_ERROR_STUB_LIBRARY */

static void* stub_symbol(const char* name) {
  static void* stub;
  if (!stub) stub = dlopen(VT_CUDA_STUB_PATH, RTLD_NOW | RTLD_LOCAL);
  return stub ? dlsym(stub, name) : NULL;
}

/* ---- forwarded unchanged ---------------------------------------------------------------------- */
#define VT_FORWARDED(X)                                                                                        \
  X(cuInit) X(cuDriverGetVersion) X(cuDeviceGet) X(cuDeviceGetCount) X(cuDeviceGetAttribute)                   \
  X(cuCtxGetCurrent) X(cuCtxGetLimit) X(cuCtxPopCurrent) X(cuCtxPushCurrent) X(cuStreamGetCtx)                 \
  X(cuGetErrorName) X(cuGetErrorString) X(cuKernelGetAttribute) X(cuKernelSetAttribute)                        \
  X(cuLaunchKernel) X(cuLaunchKernelEx) X(cuLaunchCooperativeKernel) X(cuLibraryGetKernel)                     \
  X(cuLibraryLoadFromFile) X(cuLibraryUnload) X(cuLinkCreate) X(cuLinkAddData) X(cuLinkComplete)               \
  X(cuLinkDestroy) X(cuOccupancyMaxPotentialClusterSize)

#define VT_DEFINE_FORWARD(name)                                      \
  __attribute__((visibility("hidden"))) void* vt_fwd_##name;         \
  __attribute__((naked)) void name(void) { __asm__("jmp *vt_fwd_" #name "(%rip)"); }
VT_FORWARDED(VT_DEFINE_FORWARD)

__attribute__((constructor)) static void vt_shim_init(void) {
#define VT_RESOLVE(name) vt_fwd_##name = stub_symbol(#name);
  VT_FORWARDED(VT_RESOLVE)
}

/* ---- module loads: keep the kernel's name, then fail ---------------------------------------- */
enum { kMaxKernels = 256, kMaxName = 160 };
static char kernels[kMaxKernels][kMaxName];
static int kernel_count;

/* The first "cudnn_generated_..." name in the image (ELF symbol names are plain text), or "?". */
static int record(const void* image, size_t scan) {
  static const char kPrefix[] = "cudnn_generated_";
  const char* p = (const char*)image;
  const char* hit = memmem(p, scan, kPrefix, sizeof kPrefix - 1);
  if (kernel_count < kMaxKernels) {
    char* out = kernels[kernel_count++];
    size_t n = 0;
    if (hit)
      while (n + 1 < kMaxName && ((hit[n] >= 'a' && hit[n] <= 'z') || (hit[n] >= '0' && hit[n] <= '9') || hit[n] == '_'))
        out[n] = hit[n], ++n;
    else
      out[n++] = '?';
    out[n] = '\0';
  }
  return kStubLibrary;
}
/* The bytes of a module image: an ELF cubin ends with its section header table; a fatbin's header
 * (magic 0xBA55ED50) gives its size at offset 8; anything else is read as text (PTX). */
static size_t image_size(const void* image) {
  const unsigned char* p = (const unsigned char*)image;
  unsigned int magic;
  memcpy(&magic, p, 4);
  if (p[0] == 0x7f && p[1] == 'E' && p[2] == 'L' && p[3] == 'F') {
    unsigned long long shoff;
    unsigned short shentsize, shnum;
    memcpy(&shoff, p + 0x28, 8), memcpy(&shentsize, p + 0x3A, 2), memcpy(&shnum, p + 0x3C, 2);
    return (size_t)(shoff + (unsigned long long)shentsize * shnum);
  }
  if (magic == 0xBA55ED50u) {
    unsigned long long body;
    memcpy(&body, p + 8, 8);
    return (size_t)(16 + body);
  }
  return strlen((const char*)image);
}

int cuLibraryLoadData(void** lib, const void* code, void* jit_options, void* jit_values, unsigned n_jit,
                      void* lib_options, void* lib_values, unsigned n_lib) {
  (void)lib, (void)jit_options, (void)jit_values, (void)n_jit, (void)lib_options, (void)lib_values, (void)n_lib;
  return record(code, image_size(code));
}
int cuModuleLoadData(void** module, const void* image) {
  (void)module;
  return record(image, image_size(image));
}
int cuModuleLoadDataEx(void** module, const void* image, unsigned n, void* options, void** values) {
  (void)module, (void)n, (void)options, (void)values;
  return record(image, image_size(image));
}

typedef int (*GetProcAddress)(const char*, void**, int, unsigned long long, int*);
int cuGetProcAddress_v2(const char* symbol, void** pfn, int version, unsigned long long flags, int* status) {
  void* mine = !strcmp(symbol, "cuLibraryLoadData")    ? (void*)cuLibraryLoadData
               : !strcmp(symbol, "cuModuleLoadData")   ? (void*)cuModuleLoadData
               : !strcmp(symbol, "cuModuleLoadDataEx") ? (void*)cuModuleLoadDataEx
                                                       : NULL;
  if (mine) {
    *pfn = mine;
    if (status) *status = 0; /* CU_GET_PROC_ADDRESS_SUCCESS */
    return 0;
  }
  GetProcAddress real = (GetProcAddress)stub_symbol("cuGetProcAddress_v2");
  return real ? real(symbol, pfn, version, flags, status) : kStubLibrary;
}
int cuGetProcAddress(const char* symbol, void** pfn, int version, unsigned long long flags, int* status) {
  return cuGetProcAddress_v2(symbol, pfn, version, flags, status);
}

/* ---- for the test --------------------------------------------------------------------------- */
int vt_shim_kernel_count(void) { return kernel_count; }
const char* vt_shim_kernel(int i) { return i >= 0 && i < kernel_count ? kernels[i] : ""; }
