// Checks the CUDA selective scan, run under the CPU emulation of cuda_emu.h, against the CPU
// scan (itself tested against the float64 reference) on identical inputs: outputs, last state
// and every gradient, over a sweep of shapes and options; also that two runs under different
// thread schedules are bitwise identical, and that every output element is written (outputs and
// workspace start as NaN).
//
//   check_scan_emulated [--quick] [--long] [--seed=S]
//
// --quick: the fixed cases only (no random ones); --long: also a few sequences of several hundred
// steps (the split along L of both directions when built with low split thresholds).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda_emu.h"
#include "s6kit/check.h"
#include "s6kit/scan.h"

using namespace s6kit;

namespace {

// A host array with a descriptor; `device` is what the descriptor claims.
struct Array {
  DType dt = DType::f32;
  std::vector<int64_t> shape, strides;
  std::vector<unsigned char> bytes;  // exactly the span the strides reach

  Array() = default;
  Array(DType t, std::vector<int64_t> shp, std::vector<int64_t> str = {}) : dt(t), shape(std::move(shp)) {
    if (str.empty()) {
      str.resize(shape.size());
      int64_t s = 1;
      for (int i = int(shape.size()) - 1; i >= 0; --i) {
        str[i] = s;
        s *= shape[i];
      }
    }
    strides = str;
    int64_t span = 1;
    for (size_t i = 0; i < shape.size(); ++i)
      if (shape[i] == 0) span = 0;
    if (span) {
      for (size_t i = 0; i < shape.size(); ++i) span += (shape[i] - 1) * strides[i];
    }
    bytes.assign(size_t(span) * dtype_size(t), 0xff);  // NaN in every dtype
  }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
  }
  // Element i in row-major logical order -> storage index.
  int64_t offset(int64_t i) const {
    int64_t off = 0;
    for (int d = int(shape.size()) - 1; d >= 0; --d) {
      off += (i % shape[d]) * strides[d];
      i /= shape[d];
    }
    return off;
  }
  float get(int64_t i) const {
    const int64_t o = offset(i);
    switch (dt) {
      case DType::f32: { float f; std::memcpy(&f, &bytes[o * 4], 4); return f; }
      case DType::f16: { uint16_t b; std::memcpy(&b, &bytes[o * 2], 2); return cpu::to_float(cpu::f16_t{b}); }
      case DType::bf16: { uint16_t b; std::memcpy(&b, &bytes[o * 2], 2); return cpu::to_float(cpu::bf16_t{b}); }
      default: std::abort();
    }
  }
  void set(int64_t i, float v) {
    const int64_t o = offset(i);
    switch (dt) {
      case DType::f32: std::memcpy(&bytes[o * 4], &v, 4); break;
      case DType::f16: { uint16_t b = cpu::to_f16(v).bits; std::memcpy(&bytes[o * 2], &b, 2); break; }
      case DType::bf16: { uint16_t b = cpu::to_bf16(v).bits; std::memcpy(&bytes[o * 2], &b, 2); break; }
      default: std::abort();
    }
  }
  TensorDesc desc(Device dev) {
    TensorDesc d;
    d.data = bytes.empty() ? nullptr : bytes.data();
    d.dtype = dt;
    d.ndim = int32_t(shape.size());
    for (size_t i = 0; i < shape.size(); ++i) {
      d.shape[i] = shape[i];
      d.strides[i] = strides[i];
    }
    d.device = dev;
    return d;
  }
};

struct Case {
  int64_t b, d, L, N;
  int G;  // 0: B/C (batch, N, L); >= 1: (batch, G, N, L)
  DType dt;
  bool scalarA, varB, varC, hasD, hasZ, hasBias, softplus, hasInit, hasDlast, ckpt, noncontig;
};

std::string describe(const Case& c) {
  char s[320];
  std::snprintf(s, sizeof s,
                "b=%lld d=%lld L=%lld N=%lld G=%d %s A=%s B=%s C=%s D=%d z=%d bias=%d sp=%d h0=%d "
                "dlast=%d ckpt=%d strided=%d",
                (long long)c.b, (long long)c.d, (long long)c.L, (long long)c.N, c.G, dtype_name(c.dt),
                c.scalarA ? "scalar" : "real", c.varB ? "var" : "inv", c.varC ? "var" : "inv", c.hasD,
                c.hasZ, c.hasBias, c.softplus, c.hasInit, c.hasDlast, c.ckpt, c.noncontig);
  return s;
}

struct Inputs {
  Array u, delta, A, B, C, D, z, bias, h0, dout, dlast;
};

void fill(Array& a, std::mt19937& gen, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < a.numel(); ++i) a.set(i, dist(gen));
}

Inputs make_inputs(const Case& c, std::mt19937& gen) {
  Inputs in;
  const int64_t b = c.b, d = c.d, L = c.L, N = c.N, pad = c.noncontig ? 3 : 0;
  auto bdl = [&](int64_t extra) {
    if (!c.noncontig) return Array(c.dt, {b, d, L});
    // A channel stride larger than L, and a batch stride larger than that.
    return Array(c.dt, {b, d, L}, {d * (L + extra) + 5, L + extra, 1});
  };
  in.u = bdl(pad);
  fill(in.u, gen, -1.f, 1.f);
  in.delta = bdl(pad + 1);
  if (c.softplus) fill(in.delta, gen, -3.f, 0.5f); else fill(in.delta, gen, 0.01f, 0.3f);
  in.A = c.scalarA ? (c.noncontig ? Array(DType::f32, {d}, {2}) : Array(DType::f32, {d}))
                   : (c.noncontig ? Array(DType::f32, {d, N}, {1, d}) : Array(DType::f32, {d, N}));
  fill(in.A, gen, -2.f, -0.1f);
  const int G = c.G == 0 ? 1 : c.G;
  auto bc = [&](bool var) {
    if (!var) return c.noncontig ? Array(DType::f32, {d, N}, {1, d}) : Array(DType::f32, {d, N});
    if (c.G == 0) return c.noncontig ? Array(c.dt, {b, N, L}, {N * (L + 2) + 1, L + 2, 1}) : Array(c.dt, {b, N, L});
    return c.noncontig ? Array(c.dt, {b, int64_t(G), N, L}, {G * N * (L + 2) + 7, N * (L + 2), L + 2, 1})
                       : Array(c.dt, {b, int64_t(G), N, L});
  };
  in.B = bc(c.varB);
  in.C = bc(c.varC);
  fill(in.B, gen, -1.f, 1.f);
  fill(in.C, gen, -1.f, 1.f);
  if (c.hasD) {
    in.D = c.noncontig ? Array(DType::f32, {d}, {3}) : Array(DType::f32, {d});
    fill(in.D, gen, -1.f, 1.f);
  }
  if (c.hasZ) {
    in.z = bdl(pad + 2);
    fill(in.z, gen, -2.f, 2.f);
  }
  if (c.hasBias) {
    in.bias = Array(DType::f32, {d});
    // Without softplus dt = delta + bias must stay positive (else exp(dt A) > 1 and h overflows).
    if (c.softplus) fill(in.bias, gen, -0.5f, 0.5f); else fill(in.bias, gen, 0.f, 0.2f);
  }
  if (c.hasInit) {
    in.h0 = Array(DType::f32, {b, d, N});
    fill(in.h0, gen, -1.f, 1.f);
  }
  in.dout = bdl(pad + 4);
  fill(in.dout, gen, -1.f, 1.f);
  if (c.hasDlast) {
    in.dlast = Array(DType::f32, {b, d, N});
    fill(in.dlast, gen, -1.f, 1.f);
  }
  return in;
}

struct Outputs {
  Array out, last, ckpt;
  Array du, ddelta, dA, dB, dC, dD, dz, dbias, dh0;
};

Array like(const Array& a) { return Array(a.dt, a.shape); }

// Runs forward and backward on `dev` (Device::cuda: the emulated CUDA backend).
Outputs run(const Case& c, Inputs& in, Device dev) {
  Outputs o;
  const int64_t b = c.b, d = c.d, L = c.L, N = c.N;
  ScanInputs si;
  si.u = in.u.desc(dev);
  si.delta = in.delta.desc(dev);
  si.A = in.A.desc(dev);
  si.B = in.B.desc(dev);
  si.C = in.C.desc(dev);
  TensorDesc Dd = in.D.desc(dev), zd = in.z.desc(dev), biasd = in.bias.desc(dev), h0d = in.h0.desc(dev);
  si.D = c.hasD ? &Dd : nullptr;
  si.z = c.hasZ ? &zd : nullptr;
  si.delta_bias = c.hasBias ? &biasd : nullptr;
  si.initial_state = c.hasInit ? &h0d : nullptr;
  si.delta_softplus = c.softplus;
  TensorDesc ckd;
  if (c.ckpt) {  // both backends save the states every 64 steps when given the buffer
    o.ckpt = Array(DType::f32, {b, d, (L + 63) / 64, N});
    ckd = o.ckpt.desc(dev);
    si.checkpoints = &ckd;
  }
  o.out = Array(c.dt, {b, d, L});
  o.last = Array(DType::f32, {b, d, N});
  ScanParams fp = make_scan_params(si, o.out.desc(dev), o.last.desc(dev));
  std::vector<unsigned char> fws;
  if (dev == Device::cpu) {
    scan_fwd_cpu(fp, 1);
  } else {
    fp.workspace_bytes = scan_fwd_workspace_bytes_cuda(fp);
    fws.assign(size_t(fp.workspace_bytes), 0xff);  // NaN: every entry read must have been written
    fp.workspace = fws.empty() ? nullptr : fws.data();
    scan_fwd_cuda(fp, nullptr);
  }

  ScanGrads g;
  g.dout = in.dout.desc(dev);
  TensorDesc dld = in.dlast.desc(dev);
  g.dlast_state = c.hasDlast ? &dld : nullptr;
  o.du = like(in.u);
  o.ddelta = like(in.delta);
  o.dA = like(in.A);
  o.dB = like(in.B);
  o.dC = like(in.C);
  g.du = o.du.desc(dev);
  g.ddelta = o.ddelta.desc(dev);
  g.dA = o.dA.desc(dev);
  g.dB = o.dB.desc(dev);
  g.dC = o.dC.desc(dev);
  TensorDesc dDd, dzd, dbd, dh0d;
  if (c.hasD) { o.dD = like(in.D); dDd = o.dD.desc(dev); g.dD = &dDd; }
  if (c.hasZ) { o.dz = like(in.z); dzd = o.dz.desc(dev); g.dz = &dzd; }
  if (c.hasBias) { o.dbias = like(in.bias); dbd = o.dbias.desc(dev); g.ddelta_bias = &dbd; }
  if (c.hasInit) { o.dh0 = like(in.h0); dh0d = o.dh0.desc(dev); g.dinitial_state = &dh0d; }
  ScanBwdParams bp = make_scan_bwd_params(si, g);
  std::vector<unsigned char> ws;
  if (dev == Device::cpu) {
    scan_bwd_cpu(bp, 1);
  } else {
    bp.workspace_bytes = scan_bwd_workspace_bytes_cuda(bp);
    ws.assign(size_t(bp.workspace_bytes), 0xff);
    bp.workspace = ws.empty() ? nullptr : ws.data();
    scan_bwd_cuda(bp, nullptr);
  }
  return o;
}

int g_failures = 0;

// max |got - ref| / max(max |ref|, floor); NaN anywhere in got fails.
void compare(const char* what, const Array& got, const Array& ref, float tol, const std::string& cs) {
  if (got.numel() != ref.numel()) {
    std::printf("FAIL %s: sizes differ  [%s]\n", what, cs.c_str());
    ++g_failures;
    return;
  }
  double maxref = 0, maxdiff = 0;
  int64_t bad = -1;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    const double r = ref.get(i), v = got.get(i);
    if (std::isnan(v) && !std::isnan(r)) { bad = i; break; }
    maxref = std::max(maxref, std::fabs(r));
    maxdiff = std::max(maxdiff, std::fabs(v - r));
  }
  const double rel = maxdiff / std::max(maxref, 1e-6);
  if (bad >= 0 || rel > tol || std::isnan(rel)) {
    std::printf("FAIL %s: %s rel err %.3g (max |ref| %.3g)  [%s]\n", what,
                bad >= 0 ? "NaN (unwritten?)" : "", rel, maxref, cs.c_str());
    ++g_failures;
  }
}

bool same_bits(const Array& a, const Array& b) { return a.bytes == b.bytes; }

void check_case(const Case& c, unsigned seed) {
  const std::string cs = describe(c);
  std::mt19937 gen(seed);
  Inputs in = make_inputs(c, gen);
  emu::set_schedule_seed(seed * 2 + 2);  // uniformly random order
  emu::set_max_grid(0);
  Outputs ref = run(c, in, Device::cpu);
  Outputs got = run(c, in, Device::cuda);
  const float tol = c.dt == DType::f32 ? 2e-4f : (c.dt == DType::f16 ? 4e-3f : 2e-2f);
  const float wtol = c.dt == DType::f32 ? 2e-4f : 4e-3f;  // float32 outputs of 16-bit inputs
  compare("out", got.out, ref.out, tol, cs);
  compare("last_state", got.last, ref.last, wtol, cs);
  if (c.ckpt) compare("checkpoints", got.ckpt, ref.ckpt, wtol, cs);
  compare("du", got.du, ref.du, tol, cs);
  compare("ddelta", got.ddelta, ref.ddelta, tol, cs);
  compare("dA", got.dA, ref.dA, wtol, cs);
  compare("dB", got.dB, ref.dB, c.varB ? tol : wtol, cs);
  compare("dC", got.dC, ref.dC, c.varC ? tol : wtol, cs);
  if (c.hasD) compare("dD", got.dD, ref.dD, wtol, cs);
  if (c.hasZ) compare("dz", got.dz, ref.dz, tol, cs);
  if (c.hasBias) compare("ddelta_bias", got.dbias, ref.dbias, wtol, cs);
  if (c.hasInit) compare("dinitial_state", got.dh0, ref.dh0, wtol, cs);

  // Another schedule of the threads, and a grid of 3 blocks that loop over the work: bitwise the
  // same results.
  emu::set_schedule_seed(seed * 2 + 1);  // warps race ahead
  emu::set_max_grid(3);
  Outputs again = run(c, in, Device::cuda);
  const Array* pairs[][2] = {{&got.out, &again.out}, {&got.last, &again.last}, {&got.ckpt, &again.ckpt},
                             {&got.du, &again.du},
                             {&got.ddelta, &again.ddelta}, {&got.dA, &again.dA}, {&got.dB, &again.dB},
                             {&got.dC, &again.dC}, {&got.dD, &again.dD}, {&got.dz, &again.dz},
                             {&got.dbias, &again.dbias}, {&got.dh0, &again.dh0}};
  for (auto& pr : pairs)
    if (!same_bits(*pr[0], *pr[1])) {
      std::printf("FAIL determinism: two schedules differ  [%s]\n", cs.c_str());
      ++g_failures;
      break;
    }
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, long_seqs = false;
  unsigned seed = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) quick = true;
    if (std::strcmp(argv[i], "--long") == 0) long_seqs = true;
    if (std::strncmp(argv[i], "--seed=", 7) == 0) seed = unsigned(std::atoi(argv[i] + 7));
  }
  std::vector<Case> cases;
  const DType f32 = DType::f32, bf16 = DType::bf16, f16 = DType::f16;
  //           b  d    L    N  G  dtype  sA     vB     vC     D      z      bias   sp     h0     dl     ck     nc
  cases.push_back({2, 40, 130, 16, 0, f32, false, true, true, true, true, true, true, true, true, true, false});
  cases.push_back({1, 33, 64, 16, 0, f32, false, true, true, true, true, true, true, false, false, true, false});
  cases.push_back({2, 12, 65, 16, 2, f32, true, true, true, true, true, true, true, true, true, true, false});
  cases.push_back({1, 8, 1, 16, 0, f32, false, true, true, true, true, true, true, true, true, true, false});
  cases.push_back({2, 9, 63, 5, 0, f32, false, false, true, true, false, false, false, true, false, false, true});
  cases.push_back({1, 7, 70, 1, 0, f32, false, true, false, false, true, true, true, false, true, true, false});
  cases.push_back({1, 6, 100, 64, 0, f32, false, true, true, true, true, true, true, true, true, false, true});
  cases.push_back({1, 5, 90, 128, 0, f32, true, true, true, true, true, false, true, true, true, true, false});
  cases.push_back({1, 5, 75, 256, 0, f32, false, true, true, true, true, true, true, true, true, true, false});
  cases.push_back({1, 4, 40, 200, 1, f32, true, false, false, true, true, true, true, true, true, true, true});
  // Rows aligned to 8 bytes (bf16, L = 196) and to 4 (f16, L = 98): the forward stages them in
  // 8- and 4-byte pieces, the backward's 16-bit spans load and store 8 bytes at a time.
  cases.push_back({2, 40, 196, 16, 0, bf16, false, true, true, true, true, true, true, true, true, true, false});
  cases.push_back({1, 24, 98, 16, 2, f16, true, true, true, true, true, true, true, false, true, true, false});
  // N > 32 and not a multiple of 4: the backward's reduction by 4 states ends in a partial group.
  cases.push_back({2, 12, 90, 70, 0, bf16, false, true, true, true, false, true, true, true, true, true, false});
  cases.push_back({2, 40, 130, 16, 0, bf16, false, true, true, true, true, true, true, true, true, true, false});
  cases.push_back({2, 20, 77, 32, 4, f16, true, true, true, true, true, true, true, false, true, true, true});
  cases.push_back({1, 16, 257, 16, 0, bf16, true, true, true, true, true, true, true, true, true, true, false});
  cases.push_back({2, 100, 70, 16, 0, f32, false, false, true, true, true, true, false, true, true, false, false});
  cases.push_back({1, 70, 33, 8, 0, bf16, true, false, false, true, false, true, false, false, true, true, true});
  cases.push_back({3, 40, 20, 12, 0, f32, true, false, false, false, false, true, false, false, false, true, false});
  cases.push_back({1, 16, 0, 16, 0, f32, false, true, true, true, true, true, true, true, true, true, false});
  cases.push_back({0, 16, 10, 16, 0, f32, false, true, true, true, true, true, true, true, true, true, false});
  if (long_seqs) {  // several chunks when built to split L into chunks of 64 or 128 steps
    cases.push_back({1, 6, 700, 16, 0, f32, true, true, true, true, true, true, true, true, true, true, false});
    cases.push_back({2, 5, 640, 16, 0, f32, false, true, true, true, false, true, true, true, true, true, true});
    cases.push_back({1, 3, 450, 64, 0, bf16, false, false, true, true, true, true, true, false, true, true, false});
    cases.push_back({1, 4, 333, 5, 0, f16, true, false, false, false, true, false, false, true, false, true, false});
    cases.push_back({2, 6, 400, 16, 3, f32, false, true, true, true, true, true, true, true, true, false, false});
    cases.push_back({1, 2, 300, 256, 2, bf16, true, true, true, true, true, true, true, true, true, true, false});
  }
  if (!quick) {
    std::mt19937 gen(seed);
    auto pick = [&](std::initializer_list<int64_t> v) { return *(v.begin() + gen() % v.size()); };
    for (int k = 0; k < 30; ++k) {
      Case c;
      c.b = pick({1, 2, 3});
      c.N = pick({1, 2, 4, 7, 8, 16, 17, 32, 48, 64, 100, 128, 129, 256});
      c.L = pick({1, 2, 5, 31, 63, 64, 65, 127, 128, 129, 200});
      c.G = int(pick({0, 1, 2, 3}));
      const int64_t per = pick({1, 3, 8, 17, 33});
      c.d = (c.G == 0 ? 1 : c.G) * per;
      c.dt = DType(pick({0, 1, 2}));
      auto coin = [&] { return (gen() & 1) != 0; };
      c.scalarA = coin(); c.varB = coin() || coin(); c.varC = coin() || coin(); c.hasD = coin();
      c.hasZ = coin(); c.hasBias = coin(); c.softplus = coin(); c.hasInit = coin();
      c.hasDlast = coin(); c.ckpt = coin(); c.noncontig = coin();
      cases.push_back(c);
    }
  }
  int n = 0;
  for (const Case& c : cases) {
    check_case(c, seed + unsigned(n));
    std::printf("case %2d done: %s\n", n, describe(c).c_str());
    std::fflush(stdout);
    ++n;
  }
  std::printf("%d cases, %d failures\n", n, g_failures);
  return g_failures == 0 ? 0 : 1;
}
