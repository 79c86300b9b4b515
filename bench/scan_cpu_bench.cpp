// C++ benchmark of the CPU selective scan (no Python): forward and forward + backward time.
//
//   scan_cpu_bench [--shape=batch,dim,L,N] [--threads=2] [--scalar_A=0] [--reps=10]
//
// Inputs as in the Python harness: softplus(delta + bias), D, z, real A (dim, N) or scalar A,
// variable B and C (batch, 1, N, L), float32.
#include <cstdio>

#include "bench_util.h"
#include "s6kit/scan.h"

using namespace s6kit;
using namespace s6kit::bench;

int main(int argc, char** argv) {
  const auto shape = parse_shape(flag(argc, argv, "shape", "2,256,1024,16"));
  if (shape.size() != 4) {
    std::fprintf(stderr, "--shape takes batch,dim,L,N\n");
    return 2;
  }
  const int64_t b = shape[0], d = shape[1], L = shape[2], N = shape[3];
  const int threads = std::stoi(flag(argc, argv, "threads", "2"));
  const bool scalar_A = std::stoi(flag(argc, argv, "scalar_A", "0")) != 0;
  const bool with_z = std::stoi(flag(argc, argv, "z", "1")) != 0;
  const int reps = std::stoi(flag(argc, argv, "reps", "10"));

  auto u = randn(b * d * L, 1, 0, 1), delta = randn(b * d * L, 0.5f, 0, 2), z = randn(b * d * L, 1, 0, 3);
  auto A = uniform(scalar_A ? d : d * N, -1.5f, -0.5f, 4);
  auto B = randn(b * N * L, 1, 0, 5), C = randn(b * N * L, 1, 0, 6);
  auto D = randn(d, 1, 0, 7), bias = randn(d, 0.1f, 0, 8);
  const int64_t n_ckpt = (L + kScanCheckpointInterval - 1) / kScanCheckpointInterval;
  std::vector<float> out(b * d * L), last(b * d * N), ckpt(b * d * n_ckpt * N),
      dout = randn(b * d * L, 1, 0, 9);
  std::vector<float> du(b * d * L), ddelta(b * d * L), dz(b * d * L), dA(A.size()),
      dB(B.size()), dC(C.size()), dD(d), dbias(d);

  ScanInputs in;
  in.u = make_desc(u.data(), DType::f32, {b, d, L});
  in.delta = make_desc(delta.data(), DType::f32, {b, d, L});
  in.A = scalar_A ? make_desc(A.data(), DType::f32, {d}) : make_desc(A.data(), DType::f32, {d, N});
  in.B = make_desc(B.data(), DType::f32, {b, 1, N, L});
  in.C = make_desc(C.data(), DType::f32, {b, 1, N, L});
  const TensorDesc Dd = make_desc(D.data(), DType::f32, {d});
  const TensorDesc zd = make_desc(z.data(), DType::f32, {b, d, L});
  const TensorDesc biasd = make_desc(bias.data(), DType::f32, {d});
  in.D = &Dd;
  in.z = with_z ? &zd : nullptr;
  in.delta_bias = &biasd;
  in.delta_softplus = true;
  // As in training: the forward saves states every kScanCheckpointInterval steps for the backward.
  const TensorDesc ckptd = make_desc(ckpt.data(), DType::f32, {b, d, n_ckpt, N});
  in.checkpoints = &ckptd;
  const ScanParams fp = make_scan_params(in, make_desc(out.data(), DType::f32, {b, d, L}),
                                         make_desc(last.data(), DType::f32, {b, d, N}));
  ScanGrads g;
  g.dout = make_desc(dout.data(), DType::f32, {b, d, L});
  g.du = make_desc(du.data(), DType::f32, {b, d, L});
  g.ddelta = make_desc(ddelta.data(), DType::f32, {b, d, L});
  g.dA = scalar_A ? make_desc(dA.data(), DType::f32, {d}) : make_desc(dA.data(), DType::f32, {d, N});
  g.dB = make_desc(dB.data(), DType::f32, {b, 1, N, L});
  g.dC = make_desc(dC.data(), DType::f32, {b, 1, N, L});
  const TensorDesc dDd = make_desc(dD.data(), DType::f32, {d});
  const TensorDesc dzd = make_desc(dz.data(), DType::f32, {b, d, L});
  const TensorDesc dbiasd = make_desc(dbias.data(), DType::f32, {d});
  g.dD = &dDd;
  g.dz = with_z ? &dzd : nullptr;
  g.ddelta_bias = &dbiasd;
  const ScanBwdParams bp = make_scan_bwd_params(in, g);

  const double fwd = median_ms([&] { scan_fwd(fp, nullptr, threads); }, 2, reps);
  const double bwd = median_ms([&] { scan_bwd(bp, nullptr, threads); }, 1, reps);
  const double updates = double(b) * d * L * N;
  std::printf("scan_cpu_bench shape=(%ld, %ld, %ld, %ld) threads=%d A=%s z=%d\n", long(b),
              long(d), long(L), long(N), threads, scalar_A ? "scalar" : "real", int(with_z));
  std::printf("  forward            %9.3f ms  (%.2f ns per state update per thread)\n", fwd,
              fwd * 1e6 * threads / updates);
  std::printf("  backward           %9.3f ms\n", bwd);
  std::printf("  forward + backward %9.3f ms\n", fwd + bwd);
  return 0;
}
