#!/usr/bin/env bash
# One call on a lent GPU machine (the `device` tool): the GPU check on GPU + 4 cores, and the
# CPU learning runs that were left over (Pendulum-v1 seeds 6-9 of DDPG/TD3/SAC, issue 14) on
# the other 12 cores, one torch thread each, pinned with taskset so they don't share cores
# with the GPU check. Results land in $OUT (at most 8 files come back).
#
# From the repo root (run it as the device command; the GPU part alone is `python
# bench/gpu_check.py`), with the wheels the image lacks in .whl/ (trl, datasets, dill,
# multiprocess, gymnasium, Farama-Notifications, pyarrow; see docs/benchmarks.md):
#   OUT=/tmp/out bash bench/device_run.sh
set -u
OUT=${OUT:-/tmp/device_out}
mkdir -p "$OUT"
log="$OUT/log.txt"
exec > >(tee -a "$log") 2>&1
start=$(date +%s)
elapsed() { echo "[$(($(date +%s) - start)) s] $*"; }
pin() {  # pin to cores where taskset exists, else run unpinned
    if command -v taskset > /dev/null; then taskset -c "$@"; else shift; "$@"; fi
}

# 1. Wheels the image lacks; pyarrow only if the image's is older than datasets needs.
wheels=(.whl/trl-*.whl .whl/datasets-*.whl .whl/dill-*.whl .whl/multiprocess-*.whl
        .whl/gymnasium-*.whl .whl/Farama*.whl)
if ! python3 -c "import pyarrow, sys; sys.exit(int(pyarrow.__version__.split('.')[0]) < 24)"; then
    wheels+=(.whl/pyarrow-*.whl)
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "${wheels[@]}" || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
python3 -c "import torch, transformers, accelerate, peft, trl, datasets, gymnasium as g
print('torch', torch.__version__, 'transformers', transformers.__version__, 'accelerate',
      accelerate.__version__, 'peft', peft.__version__, 'trl', trl.__version__, 'datasets',
      datasets.__version__, 'gymnasium', g.__version__, 'cpus', __import__('os').cpu_count())"
elapsed "set up"

# 2. CPU learning runs in the background, one core each (cores 4-15).
core=4
for algo in sac td3 ddpg; do
    for seed in 6 7 8 9; do
        dir=runs_dev/pendulum/${algo}_s${seed}
        mkdir -p runs_dev/pendulum
        pin $core timeout 450 python3 -m classic_control train --algo $algo \
            --env Pendulum-v1 --seed $seed --out "$dir" --no-progress --torch-threads 1 \
            > "$dir.log" 2>&1 &
        core=$((core + 1))
    done
done
elapsed "started 12 Pendulum runs"

# 3. The GPU check on cores 0-3.
OMP_NUM_THREADS=4 pin 0-3 timeout 300 python3 bench/gpu_check.py --steps 4 \
    --timeout 100 --out "$OUT/gpu_check.json"
elapsed "gpu check done"
# 4. The speed levers on a device (exactness, host syncs, step times; issue 16).
OMP_NUM_THREADS=4 pin 0-3 timeout 120 python3 bench/lm_levers_check.py \
    --out "$OUT/lm_levers_check.json"
elapsed "levers check done"
# 5. One-GPU runs of the accelerate paths: FSDP2 and plain bf16 (issue 12, item 11).
for cfg in fsdp2 gpu_1; do
    n=$([ $cfg = fsdp2 ] && echo "--num_processes 1")
    OMP_NUM_THREADS=4 pin 0-3 timeout 75 python3 -m accelerate.commands.launch \
        --config_file recipes/accelerate/$cfg.yaml $n \
        bench/gpu_sharded_check.py --steps 2 >> "$OUT/gpu_sharded_check.jsonl"
    elapsed "sharded check $cfg: exit $?"
done
wait
elapsed "Pendulum runs done"

# 6. Pack: the run folders without checkpoints; checkpoints only of unfinished runs.
for d in runs_dev/pendulum/*/; do
    [ -f "$d/eval.json" ] || echo "unfinished: $d"
done
tar czf "$OUT/pendulum_runs.tgz" --exclude=checkpoint.pt runs_dev/pendulum
unfinished=$(for d in runs_dev/pendulum/*/; do [ -f "$d/eval.json" ] || echo "$d"; done)
if [ -n "$unfinished" ]; then
    tar czf /tmp/ckpt.tgz $unfinished && split -b 15M /tmp/ckpt.tgz "$OUT/ckpt.tgz.part-"
fi
ls -la "$OUT"
elapsed "packed"
