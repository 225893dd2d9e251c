#!/usr/bin/env bash
# Paper Tab. 4, the ablation of GenieRedux-G, one step per line: the base model (no token input, no TDCE),
# + token input, + TDCE (the full model), and the full model sampled autoregressively. Every row is trained
# on the same random-agent episodes of several procgen platformers with the same tokenizer, seed and steps.
#
#   bash studies/tab4.sh                 # --size cpu: tiny preset on a 2-core CPU, ~25 min
#   bash studies/tab4.sh --size gpu      # small preset on one GPU: four platformers, the paper's visuals
#
# Every step skips work whose output exists, so re-running continues an interrupted run; --fresh starts
# over. Sizes can be overridden from the environment (e.g. DYNAMICS_STEPS=5 bash studies/tab4.sh), the games
# and the random agent's runs of one action too (collect.py --hold). The CPU size is CoinRun alone with
# procgen's monochrome sprites and keys held 1-8 steps (GAMES=procgen:coinrun:mono HOLD=8), where the tiny
# model learns on 2 cores; GAMES="procgen:coinrun procgen:jumper procgen:ninja procgen:climber" HOLD=1 gives
# the GPU size's games. Writes everything under OUT (default runs/tab4): data/, tokenizer/, the three
# dynamics models, eval/, and the table results.md with results.png.
set -euo pipefail
cd "$(dirname "$0")/.."  # the repository root: every path below is relative to it
source studies/steps.sh  # needs_value PLACEHOLDER "$@", step NAME COMMAND... (skipped once done), resume CHECKPOINT

size=cpu out=runs/tab4 fresh=0
while [ $# -gt 0 ]; do
  case $1 in
    --size) needs_value 'cpu|gpu' "$@"; size=$2; shift 2 ;;
    --out) needs_value DIR "$@"; out=$2; shift 2 ;;
    --fresh) fresh=1; shift ;;
    *) echo "error: unknown flag $1 (use --size cpu|gpu, --out DIR, --fresh)" >&2; exit 2 ;;
  esac
done

# Sizes: the games (the paper: Platformers-50, 50 retro games whose controls agree), episodes per game and
# held-out test episodes per game, optimiser steps and clips, the evaluation's windows (windows are taken game
# by game: enough for every game's test episodes) and sampler.
# TOKEN_INPUT is the "+ token input" of the rows: learned (the default of train.py) or frozen (the authors').
: "${TOKEN_INPUT:=learned}"
case $size in
  cpu) : "${GAMES:=procgen:coinrun:mono}" "${HOLD:=8}" \
         "${PRESET:=tiny}" "${EPISODES:=60}" "${TEST_EPISODES:=10}" "${MAX_STEPS:=500}" "${WORKERS:=2}" \
         "${TOKENIZER_STEPS:=3000}" "${TOKENIZER_BATCH:=12}" "${TOKENIZER_SEQ_LEN:=4}" \
         "${DYNAMICS_STEPS:=2500}" "${BATCH:=8}" "${SEQ_LEN:=12}" \
         "${EVAL_WINDOWS:=64}" "${MASKGIT_STEPS:=8}" "${TEMPERATURE:=0}" ;;
  gpu) : "${GAMES:=procgen:coinrun procgen:jumper procgen:ninja procgen:climber}" "${HOLD:=1}" \
         "${PRESET:=small}" "${EPISODES:=500}" "${TEST_EPISODES:=25}" "${MAX_STEPS:=1000}" "${WORKERS:=8}" \
         "${TOKENIZER_STEPS:=2000}" "${TOKENIZER_BATCH:=16}" "${TOKENIZER_SEQ_LEN:=16}" \
         "${DYNAMICS_STEPS:=2000}" "${BATCH:=16}" "${SEQ_LEN:=16}" \
         "${EVAL_WINDOWS:=256}" "${MASKGIT_STEPS:=25}" "${TEMPERATURE:=0}" ;;
  *) echo "error: --size must be cpu or gpu, got '$size'" >&2; exit 2 ;;
esac
[ "$fresh" = 1 ] && rm -rf "$out"
mkdir -p "$out/done"

tr ' ' '\n' <<<"$GAMES" >"$out/games.txt"
collect=(python collect.py --games "$out/games.txt" --hold "$HOLD" --max-steps "$MAX_STEPS" --workers "$WORKERS" --out "$out/data")
train=(python train.py --preset "$PRESET" --workers 0 --data "$out/data")
dynamics=("${train[@]}" --model dynamics --tokenizer "$out/tokenizer/ckpt.pt" --batch-size "$BATCH" --seq-len "$SEQ_LEN" --steps "$DYNAMICS_STEPS")
# one-go in MaskGIT's own order (--frame-order 0), the paper's sampler, as docs/RESULTS.md's tables were measured
evaluate=(python evaluate.py --data "$out/data" --delta-protocol both --max-windows "$EVAL_WINDOWS" --steps "$MASKGIT_STEPS" --temperature "$TEMPERATURE" --frame-order 0)

# 1. Random-agent episodes of every game (sec. 5.1), and a held-out test set of other levels.
step collect "${collect[@]}" --episodes "$EPISODES" --seed 0
step collect-test "${collect[@]}" --episodes "$TEST_EPISODES" --seed 1 --split test

# 2. One tokenizer for every row.
step tokenizer "${train[@]}" --model tokenizer --batch-size "$TOKENIZER_BATCH" --seq-len "$TOKENIZER_SEQ_LEN" --steps "$TOKENIZER_STEPS" --out "$out/tokenizer" $(resume "$out/tokenizer/ckpt.pt")

# 3. The rows (sec. 4): the base model, + token input, + TDCE (eq. 1).
step g-base "${dynamics[@]}" --token-input none --no-tdce --out "$out/g-base" $(resume "$out/g-base/ckpt.pt")
step g+token "${dynamics[@]}" --token-input "$TOKEN_INPUT" --no-tdce --out "$out/g+token" $(resume "$out/g+token/ckpt.pt")
step g+token+tdce "${dynamics[@]}" --token-input "$TOKEN_INPUT" --out "$out/g+token+tdce" $(resume "$out/g+token+tdce/ckpt.pt")

# 4. Evaluate each one-go; the full model also autoregressively (the table's last row).
step eval-g-base "${evaluate[@]}" --mode one-go --dynamics "$out/g-base/ckpt.pt" --out "$out/eval/g-base"
step eval-g+token "${evaluate[@]}" --mode one-go --dynamics "$out/g+token/ckpt.pt" --out "$out/eval/g+token"
step eval-g+token+tdce "${evaluate[@]}" --mode both --dynamics "$out/g+token+tdce/ckpt.pt" --out "$out/eval/g+token+tdce"

# 5. One table with the paper's numbers (Tab. 4: PSNR, SSIM, FID) under ours.
python evaluate.py --compare "$out/eval/g-base" "$out/eval/g+token" "$out/eval/g+token+tdce" --out "$out" \
  --paper GenieRedux-G-50 26.36 0.84 23.80 --paper "+ Token Input" 26.65 0.84 22.96 \
  --paper "+ TDCE Loss" 27.06 0.85 22.95 --paper Autoregressive 28.07 0.88 22.11
echo "[tab4] $(date +%H:%M:%S) done: $out/results.md, $out/results.png"
