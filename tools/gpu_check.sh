#!/usr/bin/env bash
# The one script for every run on a GPU machine: build in place (timed), run the tests, run a benchmark,
# tee logs into $OUT and print a short summary last.
#
#   FLASH_ATTN_HEADDIMS=128 bash tools/gpu_check.sh
#   BENCH=full PYTEST_ARGS="-x -k varlen" bash tools/gpu_check.sh
#   BUILD=0 TESTS=0 BENCH_ARGS="--dims 128 --verify" bash tools/gpu_check.sh
#
# Environment:
#   OUT             log folder (default /tmp/out): env.log build.log tests.log bench.log bench_<direction>.{md,csv} summary.log
#   MAX_JOBS        parallel compile jobs (default 16); FLASH_ATTN_CUDA_ARCHS / _HEADDIMS / _DTYPES narrow the build
#   NVCC_THREADS    passed through to setup.py (nvcc --threads) if set
#   BUILD           inplace (default: python3 setup.py build_ext --inplace, incremental via build/),
#                   pip (python3 -m pip install --no-build-isolation --no-deps -e .), 0 (skip)
#   TESTS           1 (default) or 0;   PYTEST_ARGS   extra pytest arguments (e.g. "-x -k fwd", "-m slow"; quotes
#                   inside are honoured, as in every *_TESTS and *_ARGS setting: '-k "varlen and not paged"')
#   TEST_PATHS      what pytest collects (default tests)
#   SM80_TESTS      pytest arguments run a second time with FLASH_ATTN_FORCE_SM80=1, so the sm80 kernels are tested
#                   on a Hopper GPU too (default: the forward-path modules below; "" to skip)
#   TESTS_TIMEOUT   seconds for pytest (default: none)
#   SANITIZE        1 (default with TESTS=1): run SANITIZE_TESTS under compute-sanitizer --tool memcheck (bad index
#                   tensors must not make any kernel access memory out of bounds); 0 to skip
#   SANITIZE_TESTS  pytest arguments for that run (default: tests/test_bad_inputs.py,
#                   tests/test_sm90_forward.py::test_forward_small, ::test_varlen and ::test_kvcache_paged_prefill)
#   RACECHECK       1 (default with TESTS=1): run RACECHECK_TESTS under compute-sanitizer --tool racecheck (shared
#                   memory hazards: the sm90 forward's TMA/mbarrier/named-barrier ordering); 0 to skip
#   RACECHECK_TESTS pytest arguments for that run (default: tests/test_sm90_forward.py::test_forward_small and
#                   ::test_kvcache_paged_prefill)
#   SANITIZE_PARALLEL  1 (default): memcheck and racecheck run in the background beside the tests (logs only in
#                   sanitize.log / racecheck.log, their tails printed once done); 0: one after the other, after them
#   BENCH           quick (default), full, 0;   BENCH_ARGS   extra benchmark arguments
#   BENCH_DIRECTIONS  space-separated benchmark directions (default "fwd"; e.g. "fwd fwd_bwd bwd")
#
# The machine has no network: the CUTLASS wheel travels in .whl/ (gitignored; prepare it once with
#   echo /.whl/ >> .git/info/exclude && pip download --no-deps -d .whl nvidia-cutlass==4.2.0.0
# and carry ".whl"). It is installed with --target /tmp/site and put on PYTHONPATH.
set -o pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
# In-place builds leave flash_attn and flash_attn_2_cuda in the repo root: make them importable from
# every script (the benchmark runs from benchmarks/).
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export MAX_JOBS=${MAX_JOBS:-16}
BUILD=${BUILD:-inplace}
TESTS=${TESTS:-1}
BENCH=${BENCH:-quick}
T0=$(date +%s)
section() { printf '\n===== [%4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
# The shell words of a setting's value into array $1, quotes honoured: PYTEST_ARGS='-x -k "varlen and not paged"'.
words() { local -n words_out=$1; eval "words_out=($2)"; }

build_status="skipped"; build_secs="-"; test_status="skipped"; test_line="-"; bench_status="skipped"
fail=0

# --- environment -----------------------------------------------------------------------------------
{
    section "environment"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1 || echo "nvidia-smi failed"
    python3 --version
    python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'device', torch.cuda.get_device_name() if torch.cuda.is_available() else None)" 2>&1
    (nvcc --version 2>/dev/null || "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" --version) | tail -1
    echo "cores $(nproc); MAX_JOBS=$MAX_JOBS NVCC_THREADS=${NVCC_THREADS:-} FLASH_ATTN_CUDA_ARCHS=${FLASH_ATTN_CUDA_ARCHS:-} FLASH_ATTN_HEADDIMS=${FLASH_ATTN_HEADDIMS:-} FLASH_ATTN_DTYPES=${FLASH_ATTN_DTYPES:-}"
    echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo '?') $(git status --porcelain 2>/dev/null | wc -l) changed files"
} 2>&1 | tee "$OUT/env.log"

# --- CUTLASS wheel (carried in .whl/) --------------------------------------------------------------
if [[ -f third_party/cutlass/include/cutlass/cutlass.h ]]; then
    echo "CUTLASS: submodule third_party/cutlass" | tee -a "$OUT/env.log"
elif compgen -G ".whl/*.whl" > /dev/null; then
    if [[ ! -d /tmp/site/cutlass_library ]]; then
        python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>&1 | tee -a "$OUT/env.log"
    fi
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    echo "CUTLASS: wheel from .whl/ installed in /tmp/site" | tee -a "$OUT/env.log"
else
    echo "CUTLASS: no submodule and no .whl/*.whl; relying on an installed nvidia-cutlass wheel" | tee -a "$OUT/env.log"
fi

# --- build -----------------------------------------------------------------------------------------
if [[ "$BUILD" != 0 ]]; then
    section "build ($BUILD, MAX_JOBS=$MAX_JOBS)" | tee "$OUT/build.log"
    tb=$(date +%s)
    if [[ "$BUILD" == pip ]]; then
        python3 -m pip install --no-build-isolation --no-deps -v -e . 2>&1 | tee -a "$OUT/build.log"
    else
        python3 setup.py build_ext --inplace 2>&1 | tee -a "$OUT/build.log"
    fi
    rc=$?
    build_secs=$(( $(date +%s) - tb ))
    if [[ $rc -eq 0 ]]; then
        build_status="ok"
    else
        build_status="FAILED (rc $rc)"
        fail=1
    fi
    echo "build: $build_status in ${build_secs}s" | tee -a "$OUT/build.log"
fi

# Odd shapes on the sm90 forward: partial tiles, GQA, windows (test_forward_small), varlen with empty and more than
# 32 sequences (test_varlen), paged caches loaded by block or in chunks (test_kvcache_paged_prefill).
SMALL_SM90_CASES="tests/test_sm90_forward.py::test_forward_small"
PAGED_SM90_CASES="tests/test_sm90_forward.py::test_kvcache_paged_prefill"
SM90_ODD_SHAPES="$SMALL_SM90_CASES tests/test_sm90_forward.py::test_varlen $PAGED_SM90_CASES"
SANITIZE_DEFAULT="tests/test_bad_inputs.py $SM90_ODD_SHAPES"
RACECHECK_DEFAULT="$SMALL_SM90_CASES $PAGED_SM90_CASES"

# --- memcheck and racecheck ------------------------------------------------------------------------
# Each a pytest run under compute-sanitizer: its log in $OUT/<name>.log, its status line in $OUT/<name>.status.
# SANITIZE_PARALLEL=1 (default): both start before the tests, in the background, and run beside them and each other
# on the same GPU, to save device time (one after the other, after the suite, they took 208 s and 207 s on an
# H100; the suite alone 125 s); the script waits for them before the benchmark. 0: each in turn, after the tests.
run_sanitizer() {  # name tool summary-regex pytest-arguments [VAR=value ...]: environment of the run
    local name=$1 tool=$2 summary=$3 args=$4 ts rc errors status
    shift 4
    ts=$(date +%s)
    section "$name: $* compute-sanitizer --tool $tool pytest $args" > "$OUT/$name.log"
    words sanitizer_tests "$args"
    env "$@" compute-sanitizer --tool "$tool" --error-exitcode 99 --print-limit 20 \
        python3 -m pytest -q -p no:cacheprovider "${sanitizer_tests[@]}" >> "$OUT/$name.log" 2>&1
    rc=$?
    errors=$(grep -E "$summary" "$OUT/$name.log" | tail -1)
    if [[ $rc -eq 0 ]]; then status="ok"; else status="FAILED (rc $rc)"; fi
    echo "$status in $(( $(date +%s) - ts ))s: ${errors:-no summary}" > "$OUT/$name.status"
}
# The runs that SANITIZE / RACECHECK ask for, as run_sanitizer's arguments (one run a line).
# PYTORCH_NO_CUDA_MEMORY_CACHING: every tensor its own allocation, so an access past a tensor is past an allocation.
sanitizer_runs() {
    [[ "${SANITIZE:-1}" != 0 ]] && run_sanitizer sanitize memcheck '^========= ERROR SUMMARY' \
        "${SANITIZE_TESTS:-$SANITIZE_DEFAULT}" PYTORCH_NO_CUDA_MEMORY_CACHING=1 &
    [[ "${SANITIZE_PARALLEL:-1}" == 0 ]] && wait
    [[ "${RACECHECK:-1}" != 0 ]] && run_sanitizer racecheck racecheck '^========= (ERROR|RACECHECK) SUMMARY' \
        "${RACECHECK_TESTS:-$RACECHECK_DEFAULT}" &
    wait
}
# Collects the runs' statuses (after sanitizer_runs has finished).
sanitize_status="skipped"
racecheck_status="skipped"
collect_sanitizers() {
    local name status
    for name in sanitize racecheck; do
        [[ -f "$OUT/$name.status" ]] || continue
        tail -4 "$OUT/$name.log"
        status=$(cat "$OUT/$name.status")
        [[ "$status" == ok* ]] || fail=1
        if [[ $name == sanitize ]]; then sanitize_status=$status; else racecheck_status=$status; fi
    done
}
rm -f "$OUT/sanitize.status" "$OUT/racecheck.status"
sanitizers_pid=""
if [[ "$TESTS" != 0 && "$build_status" != FAILED* && "${SANITIZE_PARALLEL:-1}" != 0 ]]; then
    sanitizer_runs &
    sanitizers_pid=$!
fi

# --- tests -----------------------------------------------------------------------------------------
if [[ "$TESTS" != 0 && $fail -eq 0 ]]; then
    section "tests: python3 -m pytest -q ${TEST_PATHS:-tests} ${PYTEST_ARGS:-}" | tee "$OUT/tests.log"
    tt=$(date +%s)
    timeout_cmd=()
    [[ -n "${TESTS_TIMEOUT:-}" ]] && timeout_cmd=(timeout "$TESTS_TIMEOUT")
    words test_paths "${TEST_PATHS:-tests}"
    words pytest_args "${PYTEST_ARGS:-}"
    "${timeout_cmd[@]}" python3 -m pytest -q "${test_paths[@]}" "${pytest_args[@]}" 2>&1 | tee -a "$OUT/tests.log"
    rc=$?
    test_line=$(grep -E '(passed|failed|error|skipped|deselected|no tests ran)' "$OUT/tests.log" | grep -E ' in [0-9.]+s' | tail -1)
    [[ -z "$test_line" ]] && test_line="(no pytest summary line)"
    if [[ $rc -eq 0 ]]; then test_status="ok"; else test_status="FAILED (rc $rc)"; fail=1; fi
    test_status="$test_status in $(( $(date +%s) - tt ))s"
elif [[ "$TESTS" != 0 ]]; then
    test_status="not run (build failed)"
fi

# --- the same forward tests on the sm80 kernels ---------------------------------------------------------------
SM80_TESTS=${SM80_TESTS-tests/test_flash_attn_fwd.py tests/test_window.py tests/test_flash_attn_bwd.py}
sm80_status="skipped"
if [[ "$TESTS" != 0 && -n "$SM80_TESTS" && "$build_status" != FAILED* ]]; then
    section "tests on the sm80 kernels: FLASH_ATTN_FORCE_SM80=1 python3 -m pytest -q $SM80_TESTS" | tee "$OUT/tests_sm80.log"
    tt=$(date +%s)
    words sm80_tests "$SM80_TESTS"
    FLASH_ATTN_FORCE_SM80=1 python3 -m pytest -q "${sm80_tests[@]}" 2>&1 | tee -a "$OUT/tests_sm80.log"
    rc=$?
    line=$(grep -E ' in [0-9.]+s' "$OUT/tests_sm80.log" | tail -1)
    if [[ $rc -eq 0 ]]; then sm80_status="ok"; else sm80_status="FAILED (rc $rc)"; fail=1; fi
    sm80_status="$sm80_status in $(( $(date +%s) - tt ))s: ${line:-no summary}"
fi

if [[ -n "$sanitizers_pid" ]]; then
    section "waiting for memcheck and racecheck (logs: sanitize.log, racecheck.log)"
    wait "$sanitizers_pid"
elif [[ "$TESTS" != 0 && "$build_status" != FAILED* ]]; then
    sanitizer_runs
fi
collect_sanitizers

# --- benchmark -------------------------------------------------------------------------------------
if [[ "$BENCH" != 0 && "$build_status" != FAILED* ]]; then
    bench_args=()
    [[ "$BENCH" != full ]] && bench_args+=(--quick)
    bench_status="ok"
    : > "$OUT/bench.log"
    for direction in ${BENCH_DIRECTIONS:-fwd}; do
        section "benchmark: benchmarks/benchmark_flash_attn.py --direction $direction ${bench_args[*]} ${BENCH_ARGS:-}" \
            | tee -a "$OUT/bench.log"
        rm -f "$OUT/bench_$direction.md"
        words bench_extra "${BENCH_ARGS:-}"
        python3 benchmarks/benchmark_flash_attn.py --direction "$direction" "${bench_args[@]}" "${bench_extra[@]}" \
            --output "$OUT/bench_$direction.md" --csv "$OUT/bench_$direction.csv" 2>&1 | tee -a "$OUT/bench.log"
        rc=$?
        [[ $rc -ne 0 ]] && bench_status="FAILED (rc $rc, $direction)"
    done
fi

# --- summary ---------------------------------------------------------------------------------------
{
    section "summary"
    echo "| step | result |"
    echo "|---|---|"
    echo "| build ($BUILD) | $build_status, ${build_secs}s, MAX_JOBS=$MAX_JOBS, archs=${FLASH_ATTN_CUDA_ARCHS:-80;90} hdims=${FLASH_ATTN_HEADDIMS:-all} dtypes=${FLASH_ATTN_DTYPES:-all} |"
    echo "| tests | $test_status: $test_line |"
    echo "| tests, FLASH_ATTN_FORCE_SM80=1 | $sm80_status |"
    echo "| memcheck | $sanitize_status |"
    echo "| racecheck | $racecheck_status |"
    echo "| benchmark | $bench_status |"
    if [[ "$build_status" == FAILED* ]]; then
        echo
        echo "first build errors:"
        grep -E 'error|Error' "$OUT/build.log" | grep -v -E '^\s*$' | head -20
    fi
    if [[ "$test_status" == FAILED* ]]; then
        echo
        grep -E '^(FAILED|ERROR) ' "$OUT/tests.log" | head -20
    fi
    if [[ "$sm80_status" == FAILED* ]]; then
        echo
        grep -E '^(FAILED|ERROR) ' "$OUT/tests_sm80.log" | head -20
    fi
    for direction in ${BENCH_DIRECTIONS:-fwd}; do
        if [[ -s "$OUT/bench_$direction.md" ]]; then
            echo
            cat "$OUT/bench_$direction.md"
        fi
    done
    grep -E '^- .* failed' "$OUT/bench.log" 2>/dev/null || true
    echo
    echo "total $(( $(date +%s) - T0 ))s; logs in $OUT"
} 2>&1 | tee "$OUT/summary.log"
exit $fail
