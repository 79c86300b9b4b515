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
SOURCES = [
    "tests/cuda_emulation/emu_runtime.cpp",
    "tests/cuda_emulation/check_scan.cpp",
    "cuda/scan_cuda.cu",
    "cpp/src/scan_check.cpp",
    "cpp/src/cpu/scan_cpu.cpp",
    "cpp/src/cpu/scan_cpu_generic.cpp",
]


def _compiler():
    return os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")


def _build(tmp_path: Path, extra: list[str]) -> Path:
    cxx = _compiler()
    flags = ["-std=c++17", "-O1", "-DS6KIT_WITH_CUDA", f"-I{ROOT / 'tests/cuda_emulation/include'}",
             f"-I{ROOT / 'cuda'}", f"-I{ROOT / 'cpp/include'}", f"-I{ROOT / 'cpp/src/cpu'}", *extra]
    jobs = []
    for src in SOURCES:
        obj = tmp_path / (Path(src).name + ".o")
        jobs.append((obj, subprocess.Popen([cxx, *flags, "-x", "c++", "-c", str(ROOT / src), "-o", str(obj)],
                                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    for obj, proc in jobs:
        out, _ = proc.communicate()
        assert proc.returncode == 0, f"compiling {obj.name} failed:\n{out}"
    exe = tmp_path / "check_scan_emulated"
    subprocess.run([cxx, *[str(o) for o, _ in jobs], "-o", str(exe), "-lpthread"], check=True)
    return exe


@pytest.mark.skipif(_compiler() is None, reason="needs a C++ compiler")
@pytest.mark.parametrize("mode,extra,args", [
    ("sweep", [], ["--seed=1"]),
    # A tiny cap on the dB / dC partials: blocks then sum several row tiles each.
    ("several_row_tiles_per_block", ["-DS6KIT_CUDA_MAX_PARTIAL_BYTES=4096"], ["--quick", "--seed=3"]),
])
def test_cuda_kernels_under_emulation_match_the_cpu_kernel(tmp_path, mode, extra, args):
    exe = _build(tmp_path, extra)
    res = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=900)
    tail = "\n".join(res.stdout.splitlines()[-25:]) + res.stderr[-3000:]
    assert res.returncode == 0, tail
    assert res.stdout.rstrip().endswith(" 0 failures"), tail
