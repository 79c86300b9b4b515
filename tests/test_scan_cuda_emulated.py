"""The CUDA scan kernels' logic on machines without a GPU.

tests/cuda_emulation compiles the kernel sources of cuda/ with the host C++ compiler against a
small emulation of CUDA (every thread a fiber; real barriers and warp shuffles in random orders;
NaN-filled shared memory and outputs) and compares forward, checkpoints and every gradient with
the CPU kernel on the same inputs, for a sweep of shapes and options, and checks that two thread
schedules and grid sizes give identical bits. It cannot say anything about speed or about the
GPU's own arithmetic (fast exponentials): tests/test_scan_cuda.py does, on a GPU.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMON = [
    "tests/cuda_emulation/emu_runtime.cpp",
    "tests/cuda_emulation/check_scan.cpp",
    "cpp/src/scan_check.cpp",
    "cpp/src/cpu/scan_cpu.cpp",
    "cpp/src/cpu/scan_cpu_generic.cpp",
]
LAUNCHER = "cuda/scan_cuda.cu"  # the only source that depends on the mode's definitions
MODES = {
    # The production layouts (4 states per thread, 8 above N = 128).
    "default_layouts": [],
    # Both directions with 2 states per thread (the forward more above N = 64, the backward 4
    # above N = 64 and 8 above N = 128), and a tiny cap on the backward's dB / dC partials: each
    # block then sums several row tiles.
    "two_states_several_row_tiles_per_block": ["-DS6KIT_CUDA_FWD_STATES=2",
                                               "-DS6KIT_CUDA_BWD_STATES=2",
                                               "-DS6KIT_CUDA_MAX_PARTIAL_BYTES=4096"],
    # Both directions split along L whenever L allows two chunks: the forward into chunks of 64
    # steps or more, the backward of 128 or more (chunks of several tiles).
    "split_along_L": ["-DS6KIT_CUDA_FWD_SPLIT_BELOW_WARPS=1000000", "-DS6KIT_CUDA_FWD_MIN_CHUNK=64",
                      "-DS6KIT_CUDA_BWD_SPLIT_BELOW_WARPS=1000000", "-DS6KIT_CUDA_BWD_MIN_CHUNK=128"],
}

CXX = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
pytestmark = pytest.mark.skipif(CXX is None, reason="needs a C++ compiler")


def _compile(jobs):
    procs = [(obj, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
             for obj, cmd in jobs]
    for obj, proc in procs:
        out, _ = proc.communicate()
        assert proc.returncode == 0, f"compiling {obj.name} failed:\n{out}"


@pytest.fixture(scope="module")
def executables(tmp_path_factory):
    """One check_scan_emulated binary per mode; the sources they share are compiled once."""
    out = tmp_path_factory.mktemp("cuda_emulation")
    flags = ["-std=c++17", "-O2", "-DS6KIT_WITH_CUDA", f"-I{ROOT / 'tests/cuda_emulation/include'}",
             f"-I{ROOT / 'cuda'}", f"-I{ROOT / 'cpp/include'}", f"-I{ROOT / 'cpp/src/cpu'}"]
    jobs = [(out / (Path(src).name + ".o"), [CXX, *flags, "-x", "c++", "-c", str(ROOT / src)])
            for src in COMMON]
    jobs += [(out / f"launcher_{mode}.o", [CXX, *flags, *extra, "-x", "c++", "-c", str(ROOT / LAUNCHER)])
             for mode, extra in MODES.items()]
    _compile([(obj, [*cmd, "-o", str(obj)]) for obj, cmd in jobs])
    exes = {}
    for mode in MODES:
        exe = out / f"check_scan_emulated_{mode}"
        objs = [str(out / (Path(src).name + ".o")) for src in COMMON] + [str(out / f"launcher_{mode}.o")]
        subprocess.run([CXX, *objs, "-o", str(exe), "-lpthread"], check=True)
        exes[mode] = exe
    return exes


@pytest.mark.parametrize("mode,args", [("default_layouts", ["--seed=1"]),
                                       ("two_states_several_row_tiles_per_block", ["--quick", "--seed=3"]),
                                       ("split_along_L", ["--quick", "--long", "--seed=5"])])
def test_cuda_kernels_under_emulation_match_the_cpu_kernel(executables, mode, args):
    res = subprocess.run([str(executables[mode]), *args], capture_output=True, text=True, timeout=900)
    tail = "\n".join(res.stdout.splitlines()[-25:]) + res.stderr[-3000:]
    assert res.returncode == 0, tail
    assert res.stdout.rstrip().endswith(" 0 failures"), tail
