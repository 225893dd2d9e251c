#!/usr/bin/env bash
# The whole GenieRedux loop, one step per line (paper sec. 5, Fig. 1):
#   collect random data -> pretrain tokenizer and dynamics -> train AutoExplore -> collect with it
#   -> fine-tune on exploration data vs. on fresh random data -> evaluate all on a held-out test set.
#
#   bash loop.sh                                     # tiny preset on Airstriker: a 2-core CPU, < 20 min
#   bash loop.sh --preset small --env procgen:coinrun --pretrain-envs "procgen:jumper procgen:ninja procgen:climber"
#
# Every step skips work whose output exists, so re-running continues an interrupted loop;
# --fresh starts over. Step sizes can be overridden from the environment (e.g. TOKENIZER_STEPS=5).
# Writes everything under OUT (default runs/loop): data/, models, eval/, results.md, results.png.
set -euo pipefail
cd "$(dirname "$0")"

preset=tiny env=Airstriker-Genesis-v0 pretrain_envs="" out=runs/loop fresh=0
while [ $# -gt 0 ]; do
  case $1 in
    --preset) preset=$2; shift 2 ;;
    --env) env=$2; shift 2 ;;
    --pretrain-envs) pretrain_envs=$2; shift 2 ;;  # multi-game pretraining, then fine-tuning on --env
    --out) out=$2; shift 2 ;;
    --fresh) fresh=1; shift ;;
    *) echo "error: unknown flag $1 (use --preset tiny|small, --env GAME, --pretrain-envs \"GAME ...\", --out DIR, --fresh)" >&2; exit 2 ;;
  esac
done

# Sizes per preset: episodes per env and their length, optimiser steps, agent steps, the fine-tuning
# learning rate (tiny pretrains at 2e-3, which would wreck a fine-tuned decoder: 34.4 -> 28.6 dB in 30 steps).
case $preset in
  tiny)  : "${EPISODES:=40}" "${MAX_STEPS:=400}" "${TOKENIZER_STEPS:=2000}" "${TOKENIZER_BATCH:=12}" "${TOKENIZER_SEQ_LEN:=4}" \
           "${DYNAMICS_STEPS:=2000}" "${FT_EPISODES:=10}" "${DECODER_STEPS:=50}" "${FINETUNE_STEPS:=100}" "${AGENT_STEPS:=2048}" \
           "${TEST_EPISODES:=6}" "${EVAL_WINDOWS:=64}" "${BATCH:=8}" "${SEQ_LEN:=12}" "${NUM_ENVS:=2}" "${WORKERS:=2}" \
           "${MASKGIT_STEPS:=8}" "${TEMPERATURE:=0}" "${FINETUNE_LR:=2e-4}" ;;
  small) : "${EPISODES:=400}" "${MAX_STEPS:=500}" "${TOKENIZER_STEPS:=8000}" "${TOKENIZER_BATCH:=16}" "${TOKENIZER_SEQ_LEN:=16}" \
           "${DYNAMICS_STEPS:=8000}" "${FT_EPISODES:=100}" "${DECODER_STEPS:=200}" "${FINETUNE_STEPS:=2000}" "${AGENT_STEPS:=200000}" \
           "${TEST_EPISODES:=40}" "${EVAL_WINDOWS:=400}" "${BATCH:=16}" "${SEQ_LEN:=16}" "${NUM_ENVS:=8}" "${WORKERS:=8}" \
           "${MASKGIT_STEPS:=25}" "${TEMPERATURE:=0}" "${FINETUNE_LR:=1e-4}" ;;
  *) echo "error: --preset must be tiny or small, got '$preset'" >&2; exit 2 ;;
esac
[ "$fresh" = 1 ] && rm -rf "$out"
mkdir -p "$out/done"

step() {  # step NAME COMMAND...: run COMMAND once; a marker in OUT/done records that it finished
  if [ -e "$out/done/$1" ]; then echo "[loop] skip $1 (done)"; return; fi
  echo "[loop] $(date +%H:%M:%S) $1"
  "${@:2}"
  touch "$out/done/$1"
}
resume() { [ -e "$1" ] && echo --resume || true; }  # resume CHECKPOINT: an interrupted run continues
collect=(python collect.py --max-steps "$MAX_STEPS" --workers "$WORKERS")
train=(python train.py --preset "$preset" --workers 0)
tokenizer_clips=(--batch-size "$TOKENIZER_BATCH" --seq-len "$TOKENIZER_SEQ_LEN")  # tiny: no encoder blocks, a frame is coded alone
dynamics_clips=(--batch-size "$BATCH" --seq-len "$SEQ_LEN")  # 2 context + 10 predicted frames: the evaluation's windows
evaluate=(python evaluate.py --data "$out/data/test" --mode both --max-windows "$EVAL_WINDOWS" --steps "$MASKGIT_STEPS" --temperature "$TEMPERATURE")

# 1. Random-agent data (sec. 5.1): the pretraining games, or the target game alone.
if [ -n "$pretrain_envs" ]; then
  tr ' ' '\n' <<<"$pretrain_envs" >"$out/pretrain_games.txt"
  step collect-pretrain "${collect[@]}" --games "$out/pretrain_games.txt" --episodes "$EPISODES" --seed 0 --out "$out/data/pretrain"
else
  step collect-pretrain "${collect[@]}" --env "$env" --episodes "$EPISODES" --seed 0 --out "$out/data/pretrain"
fi

# 2. Pretrain the tokenizer, then GenieRedux-G dynamics on its tokens (sec. 4).
step tokenizer "${train[@]}" "${tokenizer_clips[@]}" --model tokenizer --data "$out/data/pretrain" --steps "$TOKENIZER_STEPS" --out "$out/tokenizer" $(resume "$out/tokenizer/ckpt.pt")
step dynamics "${train[@]}" "${dynamics_clips[@]}" --model dynamics --tokenizer "$out/tokenizer/ckpt.pt" --data "$out/data/pretrain" --steps "$DYNAMICS_STEPS" --out "$out/dynamics" $(resume "$out/dynamics/ckpt.pt")

# 3. AutoExplore: PPO on the world model's token uncertainty only (sec. 4, eqs. 2-4).
step agent python agent.py --env "$env" --reward autoexplore --dynamics "$out/dynamics/ckpt.pt" --preset "$preset" \
  --num-envs "$NUM_ENVS" --total-steps "$AGENT_STEPS" --out "$out/agent" $(resume "$out/agent/agent.pt")

# 4. Exploration data on the target game: the agent's sampled actions plus 15% random ones.
step collect-explore "${collect[@]}" --env "$env" --policy agent --agent "$out/agent/agent.pt" --episodes "$FT_EPISODES" --seed 1 --out "$out/data/explore"

# 5.-6. Fine-tune on exploration data and, as the control, on as much fresh random data (sec. 5.3):
#       the tokenizer's decoder first (the paper: 1,000 iterations), then the dynamics model.
step collect-random "${collect[@]}" --env "$env" --episodes "$FT_EPISODES" --seed 2 --out "$out/data/random"
for source in explore random; do
  step "tokenizer-$source" "${train[@]}" "${tokenizer_clips[@]}" --model tokenizer --decoder-only --init "$out/tokenizer/ckpt.pt" \
    --data "$out/data/$source" --steps "$DECODER_STEPS" --lr "$FINETUNE_LR" --out "$out/tokenizer-$source" $(resume "$out/tokenizer-$source/ckpt.pt")
  step "dynamics-$source" "${train[@]}" "${dynamics_clips[@]}" --model dynamics --init "$out/dynamics/ckpt.pt" --tokenizer "$out/tokenizer-$source/ckpt.pt" \
    --data "$out/data/$source" --steps "$FINETUNE_STEPS" --lr "$FINETUNE_LR" --out "$out/dynamics-$source" $(resume "$out/dynamics-$source/ckpt.pt")
done

# 7. A held-out test set from another policy: PPO on the game's own reward (the paper: Agent57).
step agent-env python agent.py --env "$env" --reward env --preset "$preset" --num-envs "$NUM_ENVS" \
  --total-steps "$AGENT_STEPS" --seed 3 --out "$out/agent-env" $(resume "$out/agent-env/agent.pt")
step collect-test "${collect[@]}" --env "$env" --policy agent --agent "$out/agent-env/agent.pt" --episodes "$TEST_EPISODES" --seed 3 --split test --out "$out/data/test"

# 8. Evaluate the pretrained and both fine-tuned models, one-go and autoregressive (sec. 5, Tab. 5).
step eval-pretrained "${evaluate[@]}" --dynamics "$out/dynamics/ckpt.pt" --out "$out/eval/pretrained"
for source in explore random; do
  step "eval-$source" "${evaluate[@]}" --dynamics "$out/dynamics-$source/ckpt.pt" --out "$out/eval/finetuned-$source"
done

# 9. One table and one figure.
python evaluate.py --compare "$out/eval/pretrained" "$out/eval/finetuned-random" "$out/eval/finetuned-explore" --out "$out"
echo "[loop] $(date +%H:%M:%S) done: $out/results.md, $out/results.png"
