#!/usr/bin/env bash
# Paper Tab. 2, the CoinRun case study, one step per line: GenieRedux (dynamics on the LAM's latent actions)
# against GenieRedux-G (the true actions), beside the tokenizer's and the LAM's own reconstructions, the
# copy-last-frame floor and the paper's numbers. The two dynamics models differ only in their actions.
#
#   bash studies/tab2.sh                 # --size cpu: tiny preset on a 2-core CPU, ~20 min
#   bash studies/tab2.sh --size gpu      # small preset on one GPU, the paper's visuals and random agent
#
# Every step skips work whose output exists, so re-running continues an interrupted run; --fresh starts
# over. Sizes can be overridden from the environment (e.g. DYNAMICS_STEPS=5 bash studies/tab2.sh), and so
# can GAME and HOLD, the random agent's runs of one action (collect.py --hold). The CPU size plays CoinRun
# with procgen's monochrome sprites (procgen:coinrun:mono) and holds each key 1-8 steps (HOLD=8), the setting
# whose model learns on 2 cores; GAME=procgen:coinrun HOLD=1 gives the paper's visuals and random agent.
# Writes everything under OUT (default runs/tab2): data/, tokenizer/, lam/, genieredux/, genieredux-g/,
# eval/, and the table results.md with results.png.
set -euo pipefail
cd "$(dirname "$0")/.."  # the repository root: every path below is relative to it
source studies/steps.sh  # needs_value PLACEHOLDER "$@", step NAME COMMAND... (skipped once done), resume CHECKPOINT

size=cpu out=runs/tab2 fresh=0
while [ $# -gt 0 ]; do
  case $1 in
    --size) needs_value 'cpu|gpu' "$@"; size=$2; shift 2 ;;
    --out) needs_value DIR "$@"; out=$2; shift 2 ;;
    --fresh) fresh=1; shift ;;
    *) echo "error: unknown flag $1 (use --size cpu|gpu, --out DIR, --fresh)" >&2; exit 2 ;;
  esac
done

# Sizes: the game, random CoinRun episodes (the paper: 10k of at most 500 steps) and the held-out test episodes,
# optimiser steps and clips of each model, the evaluation's windows and sampler.
case $size in
  cpu) : "${GAME:=procgen:coinrun:mono}" "${HOLD:=8}" \
         "${PRESET:=tiny}" "${EPISODES:=60}" "${TEST_EPISODES:=10}" "${MAX_STEPS:=500}" "${WORKERS:=2}" \
         "${TOKENIZER_STEPS:=3000}" "${TOKENIZER_BATCH:=12}" "${TOKENIZER_SEQ_LEN:=4}" \
         "${LAM_STEPS:=1500}" "${LAM_PATCH:=16}" "${DYNAMICS_STEPS:=2500}" "${BATCH:=8}" "${SEQ_LEN:=12}" \
         "${EVAL_WINDOWS:=64}" "${MASKGIT_STEPS:=8}" "${TEMPERATURE:=0}" ;;
  gpu) : "${GAME:=procgen:coinrun}" "${HOLD:=1}" \
         "${PRESET:=small}" "${EPISODES:=2000}" "${TEST_EPISODES:=100}" "${MAX_STEPS:=500}" "${WORKERS:=8}" \
         "${TOKENIZER_STEPS:=2000}" "${TOKENIZER_BATCH:=16}" "${TOKENIZER_SEQ_LEN:=16}" \
         "${LAM_STEPS:=2000}" "${LAM_PATCH:=16}" "${DYNAMICS_STEPS:=2500}" "${BATCH:=16}" "${SEQ_LEN:=16}" \
         "${EVAL_WINDOWS:=256}" "${MASKGIT_STEPS:=25}" "${TEMPERATURE:=0}" ;;
  *) echo "error: --size must be cpu or gpu, got '$size'" >&2; exit 2 ;;
esac
[ "$fresh" = 1 ] && rm -rf "$out"
mkdir -p "$out/done"

collect=(python collect.py --env "$GAME" --hold "$HOLD" --max-steps "$MAX_STEPS" --workers "$WORKERS" --out "$out/data")
train=(python train.py --preset "$PRESET" --workers 0 --data "$out/data")
dynamics=("${train[@]}" --model dynamics --tokenizer "$out/tokenizer/ckpt.pt" --batch-size "$BATCH" --seq-len "$SEQ_LEN" --steps "$DYNAMICS_STEPS")
# one-go in MaskGIT's own order (--frame-order 0), the paper's sampler, as docs/RESULTS.md's tables were measured
evaluate=(python evaluate.py --data "$out/data" --mode one-go --delta-protocol both --max-windows "$EVAL_WINDOWS" --steps "$MASKGIT_STEPS" --temperature "$TEMPERATURE" --frame-order 0)

# 1. Random-agent CoinRun episodes (hard mode), and a held-out test set of other levels (sec. 5).
step collect "${collect[@]}" --episodes "$EPISODES" --seed 0
step collect-test "${collect[@]}" --episodes "$TEST_EPISODES" --seed 1 --split test

# 2. The tokenizer and the LAM (sec. 4), each from the frames alone.
step tokenizer "${train[@]}" --model tokenizer --batch-size "$TOKENIZER_BATCH" --seq-len "$TOKENIZER_SEQ_LEN" --steps "$TOKENIZER_STEPS" --out "$out/tokenizer" $(resume "$out/tokenizer/ckpt.pt")
step lam "${train[@]}" --model lam --lam-patch "$LAM_PATCH" --batch-size "$BATCH" --seq-len "$SEQ_LEN" --steps "$LAM_STEPS" --out "$out/lam" $(resume "$out/lam/ckpt.pt")

# 3. GenieRedux (the frozen LAM's codes as actions) and GenieRedux-G (the true actions), otherwise the same.
step genieredux "${dynamics[@]}" --actions latent --lam "$out/lam/ckpt.pt" --out "$out/genieredux" $(resume "$out/genieredux/ckpt.pt")
step genieredux-g "${dynamics[@]}" --out "$out/genieredux-g" $(resume "$out/genieredux-g/ckpt.pt")

# 4. Evaluate both on the test set: PSNR, SSIM, delta_t PSNR (both protocols); GenieRedux's also has the LAM's row.
step eval-genieredux "${evaluate[@]}" --dynamics "$out/genieredux/ckpt.pt" --out "$out/eval/genieredux"
step eval-genieredux-g "${evaluate[@]}" --dynamics "$out/genieredux-g/ckpt.pt" --out "$out/eval/genieredux-g"

# 5. One table with the paper's numbers (Tab. 2: PSNR, SSIM, FID; it gives no delta_t PSNR) under ours.
python evaluate.py --compare "$out/eval/genieredux-g" "$out/eval/genieredux" --out "$out" \
  --paper Tokenizer 38.25 0.96 18.14 --paper LAM 33.97 0.92 37.01 \
  --paper GenieRedux 25.51 0.77 21.88 --paper GenieRedux-G 33.41 0.92 18.88
echo "[tab2] $(date +%H:%M:%S) done: $out/results.md, $out/results.png"
