#!/usr/bin/env bash
# The paper's main claim, Tab. 5, as one study (GenieRedux paper sec. 5.3):
#   pretrain on random data of several games -> train AutoExplore on the pretrained model -> on a target
#   game that was part of pretraining, collect exploration data and as many frames of fresh random data ->
#   fine-tune on each (decoder, then dynamics; the best checkpoint on that data's validation split) and train
#   from scratch on the exploration data -> evaluate all on a test set played by another policy.
#
#   bash studies/tab5.sh                      # CPU size: 4 monochrome procgen platformers, tiny models, 2-core CPU
#   bash studies/tab5.sh --size gpu           # one H200: small models, the paper's visuals (collect the data on a CPU first)
#   bash studies/tab5.sh --games "procgen:coinrun procgen:jumper" --target procgen:coinrun --out runs/tab5
#
# The target is the first of the games unless --target names another. At CPU size the games are procgen's
# monochrome ones (procgen:GAME:mono) and the random agent holds each key 1-8 steps (HOLD=8), where the tiny
# CoinRun model learns on 2 cores; the GPU size plays the paper's visuals with a new random key every step.
#
# Every step skips work whose output exists, so re-running continues an interrupted study; --fresh starts
# over. Sizes can be overridden from the environment (e.g. FINETUNE_STEPS=50). Writes under OUT (default
# runs/tab5): data/, models, eval/, report/ (exploration without the world model), results.md, results.png.
set -euo pipefail
cd "$(dirname "$0")/.."  # the repository root: every path below is relative to it
source studies/steps.sh  # needs_value PLACEHOLDER "$@", step NAME COMMAND... (skipped once done), resume CHECKPOINT

size=cpu games="" target="" out=runs/tab5 fresh=0
while [ $# -gt 0 ]; do
  case $1 in
    --size) needs_value 'cpu|gpu' "$@"; size=$2; shift 2 ;;
    --games) needs_value '"GAME ..."' "$@"; games=$2; shift 2 ;;  # the pretraining games; the target must be one of them, as in the paper
    --target) needs_value GAME "$@"; target=$2; shift 2 ;;
    --out) needs_value DIR "$@"; out=$2; shift 2 ;;
    --fresh) fresh=1; shift ;;
    *) echo "error: unknown flag $1 (use --size cpu|gpu, --games \"GAME ...\", --target GAME, --out DIR, --fresh)" >&2; exit 2 ;;
  esac
done

# Sizes: the games (unless --games), the random agent's longest hold (collect.py --hold), episodes per
# pretraining game, optimiser steps, the frame budget of each fine-tuning dataset
case $size in
  cpu) preset=tiny; : "${games:=procgen:coinrun:mono procgen:jumper:mono procgen:ninja:mono procgen:climber:mono}" \
         "${HOLD:=8}" "${EPISODES:=30}" "${MAX_STEPS:=200}" "${TOKENIZER_STEPS:=2000}" "${DYNAMICS_STEPS:=2500}" \
         "${FRAMES:=3000}" "${DECODER_STEPS:=100}" "${FINETUNE_STEPS:=300}" "${EVAL_EVERY:=50}" \
         "${TEST_EPISODES:=30}" "${EVAL_WINDOWS:=64}" "${BATCH:=8}" "${SEQ_LEN:=12}" "${TOKENIZER_BATCH:=12}" \
         "${TOKENIZER_SEQ_LEN:=4}" "${WORKERS:=2}" "${MASKGIT_STEPS:=8}" "${FINETUNE_LR:=2e-4}" \
         "${AGENT_STEPS:=16384}" "${NUM_ENVS:=8}" "${ROLLOUT:=32}" "${RANDOM_UPDATES:=8}" "${GAMMA:=0.99}" \
         "${ENV_AGENT_STEPS:=24576}" "${ENV_ROLLOUT:=64}" "${ENV_RANDOM_UPDATES:=2}" "${ENV_GAMMA:=0.95}" \
         "${AGENT_LR:=3e-3}" "${ENT_COEF:=0}" "${EPOCHS:=4}" "${CLIP:=0.2}" ;;
  gpu) preset=small; : "${games:=procgen:coinrun procgen:jumper procgen:ninja procgen:climber}" \
         "${HOLD:=1}" "${EPISODES:=100}" "${MAX_STEPS:=500}" "${TOKENIZER_STEPS:=1500}" "${DYNAMICS_STEPS:=1500}" \
         "${FRAMES:=20000}" "${DECODER_STEPS:=200}" "${FINETUNE_STEPS:=600}" "${EVAL_EVERY:=100}" \
         "${TEST_EPISODES:=16}" "${EVAL_WINDOWS:=256}" "${BATCH:=16}" "${SEQ_LEN:=16}" "${TOKENIZER_BATCH:=16}" \
         "${TOKENIZER_SEQ_LEN:=16}" "${WORKERS:=8}" "${MASKGIT_STEPS:=25}" "${FINETUNE_LR:=1e-4}" \
         "${AGENT_STEPS:=65536}" "${NUM_ENVS:=16}" "${ROLLOUT:=32}" "${RANDOM_UPDATES:=16}" "${GAMMA:=0.99}" \
         "${ENV_AGENT_STEPS:=65536}" "${ENV_ROLLOUT:=64}" "${ENV_RANDOM_UPDATES:=4}" "${ENV_GAMMA:=0.9}" \
         "${AGENT_LR:=3e-3}" "${ENT_COEF:=0}" "${EPOCHS:=4}" "${CLIP:=0.2}" ;;
  *) echo "error: --size must be cpu or gpu, got '$size'" >&2; exit 2 ;;
esac
: "${target:=${games%% *}}"
case " $games " in *" $target "*) ;; *) echo "error: --target $target is not one of --games \"$games\"" >&2; exit 2 ;; esac
[ "$fresh" = 1 ] && rm -rf "$out"
mkdir -p "$out/done"

# SEED (default 0) moves every seed of the study: data, initialisation, both agents; SEED=1 is an independent replicate
: "${SEED:=0}"
seed=$((SEED * 10))
collect=(python collect.py --max-steps "$MAX_STEPS" --workers "$WORKERS")
train=(python train.py --preset "$preset" --workers 0 --seed "$SEED")
finetune=(--eval-every "$EVAL_EVERY" --lr "$FINETUNE_LR")  # evaluated often: the best checkpoint on validation is kept
tokenizer_clips=(--batch-size "$TOKENIZER_BATCH" --seq-len "$TOKENIZER_SEQ_LEN")
dynamics_clips=(--batch-size "$BATCH" --seq-len "$SEQ_LEN")
# one-go in MaskGIT's own order (--frame-order 0), the paper's sampler, as docs/RESULTS.md's tables were measured
# both agents: loop.sh's tiny PPO, AutoExplore's short rollouts and horizon and the env agent's longer ones, on more
# steps (the first random updates are random's level)
ppo=(python agent.py --env "$target" --preset "$preset" --max-steps "$MAX_STEPS" --num-envs "$NUM_ENVS"
     --lr "$AGENT_LR" --ent-coef "$ENT_COEF" --epochs "$EPOCHS" --clip "$CLIP")
evaluate=(python evaluate.py --data "$out/data/test" --max-windows "$EVAL_WINDOWS" --steps "$MASKGIT_STEPS" --temperature 0 --delta-protocol both --frame-order 0)

# 1. Pretraining: random play of every game, then the tokenizer and GenieRedux-G dynamics (sec. 4, 5.1).
tr ' ' '\n' <<<"$games" >"$out/games.txt"
step collect-pretrain "${collect[@]}" --hold "$HOLD" --games "$out/games.txt" --episodes "$EPISODES" --seed "$seed" --out "$out/data/pretrain"
step tokenizer "${train[@]}" "${tokenizer_clips[@]}" --model tokenizer --data "$out/data/pretrain" --steps "$TOKENIZER_STEPS" --out "$out/tokenizer" $(resume "$out/tokenizer/ckpt.pt")
step dynamics "${train[@]}" "${dynamics_clips[@]}" --model dynamics --tokenizer "$out/tokenizer/ckpt.pt" --data "$out/data/pretrain" --steps "$DYNAMICS_STEPS" --out "$out/dynamics" $(resume "$out/dynamics/ckpt.pt")

# 2. AutoExplore on the target game, rewarded by the pretrained model's uncertainty (sec. 4, eqs. 2-4).
step agent "${ppo[@]}" --total-steps "$AGENT_STEPS" --num-steps "$ROLLOUT" --random-updates "$RANDOM_UPDATES" --gamma "$GAMMA" --reward autoexplore --dynamics "$out/dynamics/ckpt.pt" --seed "$seed" --out "$out/agent" $(resume "$out/agent/agent.pt")

# 3.-4. The same frame budget of exploration data and of fresh random data on the target game; a fifth of
#       each is its validation split, on which the fine-tuning keeps its best checkpoint.
step collect-explore "${collect[@]}" --env "$target" --policy agent --agent "$out/agent/agent.pt" --frames "$FRAMES" --val-fraction 0.2 --seed $((seed + 1)) --out "$out/data/explore"
step collect-random "${collect[@]}" --hold "$HOLD" --env "$target" --frames "$FRAMES" --val-fraction 0.2 --seed $((seed + 2)) --out "$out/data/random"

# 5. Fine-tune on each (sec. 5.3): the tokenizer's decoder, then the dynamics model on its tokens.
for source in explore random; do
  step "tokenizer-$source" "${train[@]}" "${tokenizer_clips[@]}" --model tokenizer --decoder-only --init "$out/tokenizer/best.pt" \
    --data "$out/data/$source" --steps "$DECODER_STEPS" "${finetune[@]}" --out "$out/tokenizer-$source" $(resume "$out/tokenizer-$source/ckpt.pt")
  step "dynamics-$source" "${train[@]}" "${dynamics_clips[@]}" --model dynamics --init "$out/dynamics/best.pt" --tokenizer "$out/tokenizer-$source/best.pt" \
    --data "$out/data/$source" --steps "$FINETUNE_STEPS" "${finetune[@]}" --out "$out/dynamics-$source" $(resume "$out/dynamics-$source/ckpt.pt")
done

# 6. From scratch on the exploration data alone: both models, the pretraining's step counts.
step tokenizer-scratch "${train[@]}" "${tokenizer_clips[@]}" --model tokenizer --data "$out/data/explore" --steps "$TOKENIZER_STEPS" --out "$out/tokenizer-scratch" $(resume "$out/tokenizer-scratch/ckpt.pt")
step dynamics-scratch "${train[@]}" "${dynamics_clips[@]}" --model dynamics --tokenizer "$out/tokenizer-scratch/best.pt" --data "$out/data/explore" --steps "$DYNAMICS_STEPS" --out "$out/dynamics-scratch" $(resume "$out/dynamics-scratch/ckpt.pt")

# 7. The test set, from another policy: PPO on the game's own reward (the paper: Agent57).
step agent-env "${ppo[@]}" --total-steps "$ENV_AGENT_STEPS" --num-steps "$ENV_ROLLOUT" --random-updates "$ENV_RANDOM_UPDATES" --gamma "$ENV_GAMMA" --reward env --seed $((seed + 3)) --out "$out/agent-env" $(resume "$out/agent-env/agent.pt")
step collect-test "${collect[@]}" --env "$target" --policy agent --agent "$out/agent-env/agent.pt" --epsilon 0 --episodes "$TEST_EPISODES" --seed $((seed + 3)) --split test --out "$out/data/test"

# 8. Evaluate: one-go for every row, autoregressive for the two fine-tuned ones (Tab. 5's columns).
step eval-pretrained "${evaluate[@]}" --mode one-go --dynamics "$out/dynamics/best.pt" --out "$out/eval/pretrained"
for source in random explore; do
  step "eval-$source" "${evaluate[@]}" --mode both --dynamics "$out/dynamics-$source/best.pt" --out "$out/eval/finetuned-$source"
done
step eval-scratch "${evaluate[@]}" --mode one-go --dynamics "$out/dynamics-scratch/best.pt" --out "$out/eval/scratch-explore"

# 9. How much more of the game each agent reaches than random play, without the world model: the same frame
#    budget of exploration and random data, and the test set (levels finished show as the return).
step report python agent.py --report --data "$out/data/random" "$out/data/explore" "$out/data/test" --dynamics "$out/dynamics/best.pt" \
  --agents "$out/agent/agent.pt" "$out/agent-env/agent.pt" --out "$out/report"

# 10. One table (and results.png), the paper's numbers beside it.
python evaluate.py --compare "$out/eval/pretrained" "$out/eval/finetuned-random" "$out/eval/finetuned-explore" "$out/eval/scratch-explore" --out "$out" >/dev/null
cat >>"$out/results.md" <<'EOF'

## The paper's Tab. 5 (GenieRedux-G-50, one-go; FID / PSNR / SSIM / delta_t PSNR)

| game | fine-tuned on random data | fine-tuned on AutoExplore data |
|---|---|---|
| Adventure Island II | 42.34 / 27.04 / 0.81 / 1.19 | 12.77 / 30.60 / 0.90 / 1.47 |
| Super Mario Bros | 30.13 / 34.54 / 0.94 / 0.54 | 9.55 / 36.13 / 0.97 / 0.57 |
| Smurfs | 80.61 / 21.83 / 0.70 / 0.65 | 20.01 / 27.45 / 0.85 / 1.55 |

## Exploration without the world model (agent.py --report: report/report.json, report/report.png)

![exploration](report/report.png)

EOF
cat "$out/report/report.md" >>"$out/results.md"
cat "$out/results.md"
echo "[tab5] $(date +%H:%M:%S) done: $out/results.md"
