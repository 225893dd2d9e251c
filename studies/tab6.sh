#!/usr/bin/env bash
# Paper Tab. 6 as one study: AutoExplore against Burda et al.'s curiosity baselines, judged by where the world
# model fails (GenieRedux paper sec. 5.3, "AutoExplore Agent Evaluation"):
#   random data -> pretrain one world model (tokenizer, GenieRedux-G dynamics) -> on that game, three agents with
#   the same PPO, settings and steps: RF and VAE curiosity (curiosity.py) and AutoExplore (the model's uncertainty)
#   -> the same number of frames of episodes from each, and from the uniform random policy (our control) -> the
#   world model one-go on each agent's episodes. Lower PSNR, SSIM and delta_t PSNR: the agent found more of
#   what the model gets wrong.
#
#   bash studies/tab6.sh                      # CPU size: Airstriker, tiny models, 2-core CPU, ~20 min
#   bash studies/tab6.sh --size gpu           # one H200: small models (not run yet)
#   bash studies/tab6.sh --env procgen:coinrun --out runs/tab6-coinrun
#
# Every step skips work whose output exists, so re-running continues an interrupted study; --fresh starts
# over. Sizes can be overridden from the environment (e.g. AGENT_STEPS=4096). Writes under OUT (default
# runs/tab6): data/, tokenizer/, dynamics/, agent-{rf,vae,autoexplore}/ (with curves.png), eval/, report/
# (exploration without the world model), results.md and tab6.png.
set -euo pipefail
cd "$(dirname "$0")/.."  # the repository root: every path below is relative to it
source studies/steps.sh  # needs_value PLACEHOLDER "$@", step NAME COMMAND... (skipped once done), resume CHECKPOINT

size=cpu env=Airstriker-Genesis-v0 out=runs/tab6 fresh=0
while [ $# -gt 0 ]; do
  case $1 in
    --size) needs_value 'cpu|gpu' "$@"; size=$2; shift 2 ;;
    --env) needs_value GAME "$@"; env=$2; shift 2 ;;
    --out) needs_value DIR "$@"; out=$2; shift 2 ;;
    --fresh) fresh=1; shift ;;
    *) echo "error: unknown flag $1 (use --size cpu|gpu, --env GAME, --out DIR, --fresh)" >&2; exit 2 ;;
  esac
done

# Sizes: the pretraining episodes and optimiser steps (loop.sh's tiny ones at CPU size, but twice its dynamics
# steps: with 1,500, one run's world model did not beat its floor on any policy's episodes, and a table of such a
# model means nothing), the agents' PPO (loop.sh's tiny settings; the first RANDOM_UPDATES of AGENT_STEPS are the
# uniform policy's, its level on the curves), the frames collected with each policy and the windows the world
# model is evaluated on (one every 20 frames).
case $size in
  cpu) preset=tiny; : "${EPISODES:=40}" "${MAX_STEPS:=700}" "${TOKENIZER_STEPS:=800}" "${TOKENIZER_BATCH:=12}" \
         "${TOKENIZER_SEQ_LEN:=4}" "${DYNAMICS_STEPS:=3000}" "${BATCH:=8}" "${SEQ_LEN:=12}" "${WORKERS:=2}" \
         "${AGENT_STEPS:=16384}" "${NUM_ENVS:=8}" "${ROLLOUT:=32}" "${RANDOM_UPDATES:=14}" "${AGENT_LR:=3e-3}" \
         "${ENT_COEF:=0}" "${GAMMA:=0.99}" "${EPOCHS:=4}" "${CLIP:=0.2}" \
         "${FRAMES:=2400}" "${EVAL_WINDOWS:=100}" "${MASKGIT_STEPS:=8}" ;;
  gpu) preset=small; : "${EPISODES:=400}" "${MAX_STEPS:=500}" "${TOKENIZER_STEPS:=1500}" "${TOKENIZER_BATCH:=16}" \
         "${TOKENIZER_SEQ_LEN:=16}" "${DYNAMICS_STEPS:=1500}" "${BATCH:=16}" "${SEQ_LEN:=16}" "${WORKERS:=8}" \
         "${AGENT_STEPS:=65536}" "${NUM_ENVS:=16}" "${ROLLOUT:=32}" "${RANDOM_UPDATES:=16}" "${AGENT_LR:=3e-3}" \
         "${ENT_COEF:=0}" "${GAMMA:=0.99}" "${EPOCHS:=4}" "${CLIP:=0.2}" \
         "${FRAMES:=10000}" "${EVAL_WINDOWS:=400}" "${MASKGIT_STEPS:=25}" ;;
  *) echo "error: --size must be cpu or gpu, got '$size'" >&2; exit 2 ;;
esac
[ "$fresh" = 1 ] && rm -rf "$out"
mkdir -p "$out/done"

collect=(python collect.py --env "$env" --max-steps "$MAX_STEPS")
train=(python train.py --preset "$preset" --workers 0 --data "$out/data/pretrain")
# every reward: the same PPO, settings, seed and steps
ppo=(python agent.py --env "$env" --preset "$preset" --max-steps "$MAX_STEPS" --total-steps "$AGENT_STEPS" --num-envs "$NUM_ENVS"
     --num-steps "$ROLLOUT" --random-updates "$RANDOM_UPDATES" --lr "$AGENT_LR" --ent-coef "$ENT_COEF" --gamma "$GAMMA"
     --epochs "$EPOCHS" --clip "$CLIP" --seed 1)
# one-go in MaskGIT's own order (--frame-order 0), the paper's sampler, as docs/RESULTS.md's tables were measured
evaluate=(python evaluate.py --mode one-go --delta-protocol both --max-windows "$EVAL_WINDOWS" --steps "$MASKGIT_STEPS" --temperature 0 --frame-order 0
          --dynamics "$out/dynamics/ckpt.pt")
agents="rf vae autoexplore"

# 1. The world model every agent plays on: random-agent episodes, the tokenizer, GenieRedux-G dynamics (sec. 4, 5.1).
step collect-pretrain "${collect[@]}" --workers "$WORKERS" --episodes "$EPISODES" --seed 0 --out "$out/data/pretrain"
step tokenizer "${train[@]}" --model tokenizer --batch-size "$TOKENIZER_BATCH" --seq-len "$TOKENIZER_SEQ_LEN" --steps "$TOKENIZER_STEPS" --out "$out/tokenizer" $(resume "$out/tokenizer/ckpt.pt")
step dynamics "${train[@]}" --model dynamics --tokenizer "$out/tokenizer/ckpt.pt" --batch-size "$BATCH" --seq-len "$SEQ_LEN" --steps "$DYNAMICS_STEPS" --out "$out/dynamics" $(resume "$out/dynamics/ckpt.pt")

# 2. The agents: Burda et al.'s forward-model error in random and in VAE features, and AutoExplore (eqs. 2-4)
#    (--dynamics is AutoExplore's reward; rf and vae do not read it).
for reward in $agents; do
  step "agent-$reward" "${ppo[@]}" --reward "$reward" --dynamics "$out/dynamics/ckpt.pt" --out "$out/agent-$reward" $(resume "$out/agent-$reward/agent.pt")
done

# 3. FRAMES frames of each policy's episodes, all to a test split (none was in the world model's data), the same
#    episode seeds for every policy; the agents play their own sampled actions (--epsilon 0).
step collect-random "${collect[@]}" --frames "$FRAMES" --split test --seed 5 --out "$out/data/random"
for reward in $agents; do
  step "collect-$reward" "${collect[@]}" --policy agent --agent "$out/agent-$reward/agent.pt" --epsilon 0 --frames "$FRAMES" --split test --seed 5 --out "$out/data/$reward"
done

# 4. The pretrained world model one-go on each policy's episodes: PSNR, SSIM, delta_t PSNR (both protocols), the floor.
for name in random $agents; do
  step "eval-$name" "${evaluate[@]}" --data "$out/data/$name" --out "$out/eval/$name"
done

# 5. How each policy played, without the world model (return, steps alive, places), beside the AutoExplore
#    reward of its steps and each agent's policy entropy.
step report python agent.py --report --data "$out/data/random" "$out/data/rf" "$out/data/vae" "$out/data/autoexplore" \
  --dynamics "$out/dynamics/ckpt.pt" --agents "$out/agent-rf/agent.pt" "$out/agent-vae/agent.pt" "$out/agent-autoexplore/agent.pt" --out "$out/report"

# 6. One table in Tab. 6's form with the paper's numbers, AutoExplore's rank and tab6.png; every row's full table below.
python evaluate.py --compare "$out/eval/random" "$out/eval/rf" "$out/eval/vae" "$out/eval/autoexplore" --out "$out/eval/compare" >/dev/null
python studies/tab6_table.py --out "$out"
echo "[tab6] $(date +%H:%M:%S) done: $out/results.md, $out/tab6.png"
