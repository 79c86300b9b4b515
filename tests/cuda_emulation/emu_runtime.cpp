// The fiber scheduler behind cuda_emu.h, and emulated launchers of the scan kernels (the same
// kernel choice as cuda/scan_launch_impl.cuh and cuda/scan_reduce.cu, run by emu::run_grid).
#include <setjmp.h>
#include <ucontext.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <vector>

#include "cuda_emu.h"
#include "scan_split_combine.cuh"
#include "scan_reduce.cuh"

namespace s6kit::cuda_scan {
// The dynamic shared memory of the block being run (the kernels' `extern __shared__` array).
constexpr size_t kSmemCapacity = 256 * 1024;
alignas(16) float4 smem_f4[kSmemCapacity / sizeof(float4)];
}  // namespace s6kit::cuda_scan

namespace emu {

dim3 g_block_idx, g_block_dim, g_grid_dim;

namespace {

enum class State { runnable, at_block, at_warp, done };

// A fiber starts on its own stack through makecontext / swapcontext; after that, switches use
// _setjmp / _longjmp, which do not touch the signal mask (no system call per switch).
struct Fiber {
  ucontext_t ctx;
  jmp_buf jb;
  bool started = false;
  std::unique_ptr<char[]> stack;
  dim3 tid;
  State state = State::runnable;
  int warp_kind = 0;  // which warp barrier: 1 __syncwarp, 2 / 3 the two halves of a shuffle
};

constexpr size_t kStackBytes = 512 * 1024;

struct Block {
  std::vector<Fiber> fibers;
  std::vector<float> shfl;
  ucontext_t sched;
  jmp_buf sched_jb;
  int cur = -1;
  int nt = 0;
  const std::function<void()>* body = nullptr;
  std::mt19937 rng;
  unsigned seed = 1;
};

Block g;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "cuda emulation: %s (block %u,%u thread %d)\n", what, g_block_idx.x,
               g_block_idx.y, g.cur);
  std::abort();
}

void yield_to_scheduler(Fiber& f) {
  if (_setjmp(f.jb) == 0) _longjmp(g.sched_jb, 1);
}

void fiber_main() {
  (*g.body)();
  Fiber& f = g.fibers[g.cur];
  f.state = State::done;
  yield_to_scheduler(f);
  fail("a finished thread was resumed");
}

void resume(int i) {
  g.cur = i;
  Fiber& f = g.fibers[i];
  if (_setjmp(g.sched_jb) == 0) {
    if (!f.started) {
      f.started = true;
      swapcontext(&g.sched, &f.ctx);  // returns only if the fiber's function returned: never
      fail("fiber context returned");
    }
    _longjmp(f.jb, 1);
  }
}

void wait(State s, int kind) {
  Fiber& f = g.fibers[g.cur];
  f.state = s;
  f.warp_kind = kind;
  yield_to_scheduler(f);
}

void wait_warp(int kind) { wait(State::at_warp, kind); }

// Releases whatever barrier is complete; false when none is (a deadlock unless all are done).
bool all_in(State s) {
  for (int i = 0; i < g.nt; ++i)
    if (g.fibers[i].state != s) return false;
  return true;
}

// After fiber i stopped at a barrier: releases the barrier if its whole scope has arrived.
// Released fibers join `ready`. A warp barrier is released as soon as its warp has arrived, so
// warps run ahead of each other as on a GPU.
// Warp priorities of the "warps race ahead" schedule, drawn again at every block barrier.
std::vector<int> g_warp_rank;

void draw_warp_ranks() {
  g_warp_rank.resize((g.nt + 31) / 32);
  for (size_t w = 0; w < g_warp_rank.size(); ++w) g_warp_rank[w] = int(w);
  std::shuffle(g_warp_rank.begin(), g_warp_rank.end(), g.rng);
}

void release_after(int i, std::vector<int>& ready) {
  const Fiber& f = g.fibers[i];
  if (f.state == State::at_block) {
    if (!all_in(State::at_block)) return;
    for (int k = 0; k < g.nt; ++k) {
      g.fibers[k].state = State::runnable;
      ready.push_back(k);
    }
    draw_warp_ranks();
  } else if (f.state == State::at_warp) {
    const int lo = i & ~31, hi = std::min(g.nt, lo + 32);
    if (hi - lo != 32) fail("partial warp");
    for (int k = lo; k < hi; ++k)
      if (g.fibers[k].state != State::at_warp || g.fibers[k].warp_kind != f.warp_kind) return;
    for (int k = lo; k < hi; ++k) {
      g.fibers[k].state = State::runnable;
      ready.push_back(k);
    }
  }
}

void run_block(size_t smem_bytes) {
  auto* smem = reinterpret_cast<unsigned char*>(s6kit::cuda_scan::smem_f4);
  if (smem_bytes > s6kit::cuda_scan::kSmemCapacity) fail("dynamic shared memory above capacity");
  std::memset(smem, 0xff, s6kit::cuda_scan::kSmemCapacity);  // NaN everywhere
  std::vector<int> ready;
  for (int i = 0; i < g.nt; ++i) {
    Fiber& f = g.fibers[i];
    f.state = State::runnable;
    f.started = false;
    f.tid = dim3(static_cast<unsigned>(i));
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack.get();
    f.ctx.uc_stack.ss_size = kStackBytes;
    f.ctx.uc_link = nullptr;
    makecontext(&f.ctx, fiber_main, 0);
    ready.push_back(i);
  }
  // Runs one ready fiber up to its next barrier. Schedules: seed 0, thread order; odd seeds,
  // the ready fiber of the highest-ranked warp (so that a warp runs as far ahead of the others as
  // the barriers allow: missing barriers between phases show); even seeds, uniformly random.
  draw_warp_ranks();
  while (!ready.empty()) {
    size_t pick = 0;
    if (g.seed == 0) {
      for (size_t k = 1; k < ready.size(); ++k)
        if (ready[k] < ready[pick]) pick = k;
    } else if (g.seed % 2 == 1) {
      pick = g.rng() % ready.size();
      for (size_t k = 0; k < ready.size(); ++k)
        if (g_warp_rank[ready[k] / 32] < g_warp_rank[ready[pick] / 32]) pick = k;
    } else {
      pick = g.rng() % ready.size();
    }
    const int i = ready[pick];
    ready[pick] = ready.back();
    ready.pop_back();
    resume(i);
    g.cur = -1;
    release_after(i, ready);
  }
  if (!all_in(State::done)) {
    for (int i = 0; i < g.nt; ++i)
      std::fprintf(stderr, "  thread %d: state %d kind %d\n", i, int(g.fibers[i].state),
                   g.fibers[i].warp_kind);
    fail("deadlock: a barrier that not all threads of its scope reach");
  }
  for (size_t i = smem_bytes; i < s6kit::cuda_scan::kSmemCapacity; ++i)
    if (smem[i] != 0xff) fail("write past the block's dynamic shared memory");
}

}  // namespace

const dim3& thread_idx() { return g.fibers[g.cur].tid; }

void sync_block() { wait(State::at_block, 0); }

void sync_warp() { wait_warp(1); }

float shfl_xor(float v, int lane_mask) {
  if (lane_mask <= 0 || lane_mask >= 32) fail("shuffle lane mask out of range");
  g.shfl[g.cur] = v;
  wait_warp(2);
  const float r = g.shfl[(g.cur & ~31) | ((g.cur & 31) ^ lane_mask)];
  wait_warp(3);
  return r;
}

void set_schedule_seed(unsigned seed) {
  g.seed = seed;
  g.rng.seed(seed);
}

unsigned g_max_grid = 0;

void set_max_grid(unsigned blocks) { g_max_grid = blocks; }

unsigned max_grid() { return g_max_grid; }

void run_grid(dim3 grid, dim3 block, size_t smem_bytes, const std::function<void()>& body) {
  if (block.y != 1 || block.z != 1 || block.x % 32 != 0 || block.x > 1024) fail("unsupported block shape");
  g.nt = static_cast<int>(block.x);
  if (g.fibers.size() < size_t(g.nt)) g.fibers.resize(g.nt);  // (before any context exists)
  for (Fiber& f : g.fibers)
    if (!f.stack) f.stack.reset(new char[kStackBytes]);
  g.shfl.assign(g.nt, 0.f);
  g.body = &body;
  g_grid_dim = grid;
  g_block_dim = block;
  for (unsigned y = 0; y < grid.y; ++y)
    for (unsigned x = 0; x < grid.x; ++x) {
      g_block_idx = dim3(x, y);
      run_block(smem_bytes);
    }
}

}  // namespace emu

// Emulated launchers: the same kernel selection and grid as the CUDA ones.
namespace s6kit::cuda_scan {

namespace {
unsigned emu_grid(int64_t blocks) {
  const unsigned cap = emu::max_grid();
  int64_t g = blocks < kMaxGridBlocks ? blocks : kMaxGridBlocks;
  if (cap > 0 && g > cap) g = cap;
  return static_cast<unsigned>(g);
}
}  // namespace

template <typename in_t>
void launch_fwd(const FwdArgs& args, cudaStream_t) {
  const auto kernel = fwd_kernel<in_t>(args);
  emu::run_grid(dim3(emu_grid(fwd_blocks(args))), dim3(args.lay.nt), args.lay.smem_bytes,
                [&] { kernel(args); });
}

void launch_fwd_combine(const ChunkCombine& a, cudaStream_t) {
  const int64_t count = a.rows * a.N;
  if (count == 0 || a.nchunks < 3) return;
  const int threads = 64;
  emu::run_grid(dim3(emu_grid((count + threads - 1) / threads)), dim3(threads), 0,
                [&] { scan_fwd_combine_kernel(a); });
}

void launch_bwd_combine(const ChunkCombine& a, cudaStream_t) {
  const int64_t count = a.rows * a.N;
  if (count == 0) return;
  const int threads = 64;
  emu::run_grid(dim3(emu_grid((count + threads - 1) / threads)), dim3(threads), 0,
                [&] { scan_bwd_combine_kernel(a); });
}

template <typename in_t>
void launch_bwd(const BwdArgs& args, cudaStream_t) {
  const auto kernel = bwd_kernel<in_t>(args);
  emu::run_grid(dim3(emu_grid(bwd_blocks(args))), dim3(args.lay.nt), args.lay.smem_bytes,
                [&] { kernel(args); });
}

template void launch_fwd<float>(const FwdArgs&, cudaStream_t);
template void launch_fwd<__half>(const FwdArgs&, cudaStream_t);
template void launch_fwd<__nv_bfloat16>(const FwdArgs&, cudaStream_t);
template void launch_bwd<float>(const BwdArgs&, cudaStream_t);
template void launch_bwd<__half>(const BwdArgs&, cudaStream_t);
template void launch_bwd<__nv_bfloat16>(const BwdArgs&, cudaStream_t);

void launch_reduce_rows(const RowReduction* jobs, int njobs, int64_t batch, cudaStream_t) {
  if (njobs <= 0) return;
  RowJobs all;
  all.batch = batch;
  int64_t most = 0;
  for (int i = 0; i < njobs; ++i) {
    all.job[i] = jobs[i];
    most = std::max(most, jobs[i].count);
  }
  if (most == 0) return;
  const int threads = 256;
  const int64_t blocks = (most + threads - 1) / threads;
  emu::run_grid(dim3(emu_grid(blocks), static_cast<unsigned>(njobs)), dim3(threads), 0,
                [&] { reduce_rows_kernel(all); });
}

void launch_reduce_bc(DType type, const BcReduction& a, cudaStream_t) {
  const int64_t blocks = a.groups * ((a.L + kBcSteps - 1) / kBcSteps);
  if (blocks == 0 || (a.dB == nullptr && a.dC == nullptr)) return;
  const dim3 grid(emu_grid(blocks)), block(kBcThreads);
  switch (type) {
    case DType::f32: emu::run_grid(grid, block, kBcSmemBytes, [&] { reduce_bc_kernel<float>(a); }); break;
    case DType::f16: emu::run_grid(grid, block, kBcSmemBytes, [&] { reduce_bc_kernel<__half>(a); }); break;
    case DType::bf16: emu::run_grid(grid, block, kBcSmemBytes, [&] { reduce_bc_kernel<__nv_bfloat16>(a); }); break;
    default: std::abort();
  }
}

}  // namespace s6kit::cuda_scan
