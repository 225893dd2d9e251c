#!/usr/bin/env bash
# The whole GenieRedux loop, one step per line (paper sec. 5, Fig. 1):
#   collect random data -> pretrain tokenizer and dynamics -> train AutoExplore -> collect with it
#   -> fine-tune on exploration data vs. on fresh random data -> evaluate all on a held-out test set.
#
#   bash loop.sh                                     # tiny preset on Airstriker: a 2-core CPU, < 20 min
#   bash loop.sh --preset small --env procgen:coinrun --pretrain-envs "procgen:jumper procgen:ninja procgen:climber"
#
# Every step skips work whose output exists, so re-running continues an interrupted loop;
# --fresh starts over. Step sizes can be overridden from the environment (e.g. TOKENIZER_STEPS=5), and so can
# HOLD, the random agent's runs of one action (collect.py --hold; default 1, a new action every step).
# Writes everything under OUT (default runs/loop): data/, models, eval/, results.md, results.png.
set -euo pipefail
cd "$(dirname "$0")"
source studies/steps.sh  # needs_value PLACEHOLDER "$@", step NAME COMMAND... (skipped once done), resume CHECKPOINT

preset=tiny env=Airstriker-Genesis-v0 pretrain_envs="" out=runs/loop fresh=0
while [ $# -gt 0 ]; do
  case $1 in
    --preset) needs_value 'tiny|small' "$@"; preset=$2; shift 2 ;;
    --env) needs_value GAME "$@"; env=$2; shift 2 ;;
    --pretrain-envs) needs_value '"GAME ..."' "$@"; pretrain_envs=$2; shift 2 ;;  # multi-game pretraining, then fine-tuning on --env
    --out) needs_value DIR "$@"; out=$2; shift 2 ;;
    --fresh) fresh=1; shift ;;
    *) echo "error: unknown flag $1 (use --preset tiny|small, --env GAME, --pretrain-envs \"GAME ...\", --out DIR, --fresh)" >&2; exit 2 ;;
  esac
done

# Sizes per preset: episodes per env and their length (tiny: 700 agent steps, the paper's 700-frame sessions; random
# play ends at game over after ~400), optimiser steps, the frames of each fine-tuning dataset (the same for exploration
# and random data), the fine-tuning learning rate (tiny pretrains at 2e-3, which would wreck a fine-tuned decoder),
# the test windows of steps 8 and 9, and both agents' PPO over NUM_ENVS games, the first updates played by the uniform random
# policy (random's level on the curves). AutoExplore (AGENT_STEPS, ROLLOUT steps per update, RANDOM_UPDATES, GAMMA)
# takes short rollouts, so many updates, and a long horizon: its reward answers the last key at once (the model is
# unsure how far the ship moves), which a short-sighted agent exploits by holding one direction, while what the model
# gets wrong comes from a way of playing (shots and explosions, a ship that lives on), which only a long horizon credits
# (tiny: its entropy falls below 1.45 after ~6,000 steps). The test set's player (ENV_AGENT_STEPS, ENV_ROLLOUT,
# ENV_RANDOM_UPDATES, ENV_GAMMA) must learn the game, whose reward (an enemy shot down) comes later than the key.
case $preset in
  tiny)  : "${EPISODES:=40}" "${MAX_STEPS:=700}" "${TOKENIZER_STEPS:=800}" "${TOKENIZER_BATCH:=12}" "${TOKENIZER_SEQ_LEN:=4}" \
           "${DYNAMICS_STEPS:=1500}" "${FT_FRAMES:=4000}" "${DECODER_STEPS:=50}" "${FINETUNE_STEPS:=100}" \
           "${TEST_EPISODES:=10}" "${EVAL_WINDOWS:=64}" "${ON_DATA_WINDOWS:=128}" "${BATCH:=8}" "${SEQ_LEN:=12}" "${WORKERS:=2}" \
           "${MASKGIT_STEPS:=8}" "${TEMPERATURE:=0}" "${FINETUNE_LR:=2e-4}" \
           "${AGENT_STEPS:=16384}" "${NUM_ENVS:=8}" "${ROLLOUT:=32}" "${RANDOM_UPDATES:=14}" "${GAMMA:=0.99}" \
           "${ENV_AGENT_STEPS:=24576}" "${ENV_ROLLOUT:=64}" "${ENV_RANDOM_UPDATES:=2}" "${ENV_GAMMA:=0.95}" \
           "${AGENT_LR:=3e-3}" "${ENT_COEF:=0}" "${EPOCHS:=4}" "${CLIP:=0.2}" ;;
  small) : "${EPISODES:=400}" "${MAX_STEPS:=500}" "${TOKENIZER_STEPS:=8000}" "${TOKENIZER_BATCH:=16}" "${TOKENIZER_SEQ_LEN:=16}" \
           "${DYNAMICS_STEPS:=8000}" "${FT_FRAMES:=50000}" "${DECODER_STEPS:=200}" "${FINETUNE_STEPS:=2000}" \
           "${TEST_EPISODES:=40}" "${EVAL_WINDOWS:=400}" "${ON_DATA_WINDOWS:=400}" "${BATCH:=16}" "${SEQ_LEN:=16}" "${WORKERS:=8}" \
           "${MASKGIT_STEPS:=25}" "${TEMPERATURE:=0}" "${FINETUNE_LR:=1e-4}" \
           "${AGENT_STEPS:=200000}" "${NUM_ENVS:=8}" "${ROLLOUT:=128}" "${RANDOM_UPDATES:=4}" "${GAMMA:=0.99}" \
           "${ENV_AGENT_STEPS:=200000}" "${ENV_ROLLOUT:=128}" "${ENV_RANDOM_UPDATES:=4}" "${ENV_GAMMA:=0.99}" \
           "${AGENT_LR:=2.5e-4}" "${ENT_COEF:=0.01}" "${EPOCHS:=4}" "${CLIP:=0.1}" ;;
  *) echo "error: --preset must be tiny or small, got '$preset'" >&2; exit 2 ;;
esac
[ "$fresh" = 1 ] && rm -rf "$out"
mkdir -p "$out/done"

collect=(python collect.py --max-steps "$MAX_STEPS" --workers "$WORKERS")
random_agent=(--hold "${HOLD:=1}")  # the random agent's data: pretraining and the fine-tuning control
train=(python train.py --preset "$preset" --workers 0)
tokenizer_clips=(--batch-size "$TOKENIZER_BATCH" --seq-len "$TOKENIZER_SEQ_LEN")  # tiny: no encoder blocks, a frame is coded alone
dynamics_clips=(--batch-size "$BATCH" --seq-len "$SEQ_LEN")  # 2 context + 10 predicted frames: the evaluation's windows
evaluate=(python evaluate.py --steps "$MASKGIT_STEPS" --temperature "$TEMPERATURE")
ppo=(python agent.py --env "$env" --preset "$preset" --max-steps "$MAX_STEPS" --num-envs "$NUM_ENVS" --lr "$AGENT_LR"
     --ent-coef "$ENT_COEF" --epochs "$EPOCHS" --clip "$CLIP")

# 1. Random-agent data (sec. 5.1): the pretraining games, or the target game alone.
if [ -n "$pretrain_envs" ]; then
  tr ' ' '\n' <<<"$pretrain_envs" >"$out/pretrain_games.txt"
  step collect-pretrain "${collect[@]}" "${random_agent[@]}" --games "$out/pretrain_games.txt" --episodes "$EPISODES" --seed 0 --out "$out/data/pretrain"
else
  step collect-pretrain "${collect[@]}" "${random_agent[@]}" --env "$env" --episodes "$EPISODES" --seed 0 --out "$out/data/pretrain"
fi

# 2. Pretrain the tokenizer, then GenieRedux-G dynamics on its tokens (sec. 4).
step tokenizer "${train[@]}" "${tokenizer_clips[@]}" --model tokenizer --data "$out/data/pretrain" --steps "$TOKENIZER_STEPS" --out "$out/tokenizer" $(resume "$out/tokenizer/ckpt.pt")
step dynamics "${train[@]}" "${dynamics_clips[@]}" --model dynamics --tokenizer "$out/tokenizer/ckpt.pt" --data "$out/data/pretrain" --steps "$DYNAMICS_STEPS" --out "$out/dynamics" $(resume "$out/dynamics/ckpt.pt")

# 3. AutoExplore: PPO on the world model's token uncertainty only (sec. 4, eqs. 2-4).
step agent "${ppo[@]}" --total-steps "$AGENT_STEPS" --num-steps "$ROLLOUT" --random-updates "$RANDOM_UPDATES" --gamma "$GAMMA" --reward autoexplore --dynamics "$out/dynamics/ckpt.pt" --out "$out/agent" $(resume "$out/agent/agent.pt")

# 4. Exploration data on the target game: the agent's sampled actions plus 15% random ones.
step collect-explore "${collect[@]}" --env "$env" --policy agent --agent "$out/agent/agent.pt" --frames "$FT_FRAMES" --seed 1 --out "$out/data/explore"

# 5.-6. Fine-tune on exploration data and, as the control, on as much fresh random data (sec. 5.3):
#       the tokenizer's decoder first (the paper: 1,000 iterations), then the dynamics model.
step collect-random "${collect[@]}" "${random_agent[@]}" --env "$env" --frames "$FT_FRAMES" --seed 2 --out "$out/data/random"
for source in explore random; do
  step "tokenizer-$source" "${train[@]}" "${tokenizer_clips[@]}" --model tokenizer --decoder-only --init "$out/tokenizer/ckpt.pt" \
    --data "$out/data/$source" --steps "$DECODER_STEPS" --lr "$FINETUNE_LR" --out "$out/tokenizer-$source" $(resume "$out/tokenizer-$source/ckpt.pt")
  step "dynamics-$source" "${train[@]}" "${dynamics_clips[@]}" --model dynamics --init "$out/dynamics/ckpt.pt" --tokenizer "$out/tokenizer-$source/ckpt.pt" \
    --data "$out/data/$source" --steps "$FINETUNE_STEPS" --lr "$FINETUNE_LR" --out "$out/dynamics-$source" $(resume "$out/dynamics-$source/ckpt.pt")
done

# 7. A held-out test set from another policy: PPO on the game's own reward (the paper: Agent57).
step agent-env "${ppo[@]}" --total-steps "$ENV_AGENT_STEPS" --num-steps "$ENV_ROLLOUT" --random-updates "$ENV_RANDOM_UPDATES" --gamma "$ENV_GAMMA" --reward env --seed 3 --out "$out/agent-env" $(resume "$out/agent-env/agent.pt")
step collect-test "${collect[@]}" --env "$env" --policy agent --agent "$out/agent-env/agent.pt" --epsilon 0 --episodes "$TEST_EPISODES" --seed 3 --split test --out "$out/data/test"

# 8. Evaluate the pretrained and both fine-tuned models on the test set, one-go and autoregressive (sec. 5, Tab. 5).
step eval-pretrained "${evaluate[@]}" --data "$out/data/test" --max-windows "$EVAL_WINDOWS" --mode both --dynamics "$out/dynamics/ckpt.pt" --out "$out/eval/pretrained"
for source in explore random; do
  step "eval-$source" "${evaluate[@]}" --data "$out/data/test" --max-windows "$EVAL_WINDOWS" --mode both --dynamics "$out/dynamics-$source/ckpt.pt" --out "$out/eval/finetuned-$source"
done

# 9. Where the world model is wrong (the paper's reading of Tab. 6): the pretrained model, one-go, on as many
#    windows of the exploration episodes as of the fresh random ones (neither was in its training data).
for source in explore random; do
  step "eval-on-$source" "${evaluate[@]}" --data "$out/data/$source/train" --max-windows "$ON_DATA_WINDOWS" --mode one-go --dynamics "$out/dynamics/ckpt.pt" --out "$out/eval/pretrained-on-$source"
done

# 10. What the agents learned, without the world model: return, steps alive and places reached per episode
#     of each policy, beside the AutoExplore reward (every 4th step) and each agent's policy entropy.
step report python agent.py --report --data "$out/data/random" "$out/data/explore" "$out/data/test" --dynamics "$out/dynamics/ckpt.pt" \
  --agents "$out/agent/agent.pt" "$out/agent-env/agent.pt" --out "$out/report"

# 11. One table and one figure.
python evaluate.py --compare "$out/eval/pretrained" "$out/eval/finetuned-random" "$out/eval/finetuned-explore" --out "$out" >/dev/null
{ echo; echo "## The pretrained model on the exploration episodes and on fresh random ones (one-go)"; echo
  python evaluate.py --compare "$out/eval/pretrained-on-random" "$out/eval/pretrained-on-explore" --out "$out/eval/on-data" >/dev/null
  cat "$out/eval/on-data/results.md"
  echo; echo "## The agents' episodes (agent.py --report; report/report.png, agent/curves.png, agent-env/curves.png)"; echo
  cat "$out/report/report.md"; } >>"$out/results.md"
cat "$out/results.md"
echo "[loop] $(date +%H:%M:%S) done: $out/results.md, $out/results.png"
