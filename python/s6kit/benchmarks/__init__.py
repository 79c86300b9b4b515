"""Benchmark harnesses behind `s6kit bench ...` (performance is shown here, never in tests)."""
