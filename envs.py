"""Game environments for collection and agent training (GenieRedux paper sec. 3).

Every game, stable-retro or procgen, is driven through the same small interface:
`reset(seed) -> frame` and `step(action) -> (frame, reward, done)`, with the shared action set
RIGHT, LEFT, UP, DOWN, JUMP and 64x64 RGB frames (padded to a square with black, then
area-resized). stable_retro and procgen are imported only inside the functions that make envs,
so scripts that just read episodes run on machines without emulators.

    from envs import make_game
    game = make_game("Airstriker-Genesis-v0", frame_skip=4, resolution=64)
    frame = game.reset(seed=0); frame, reward, done = game.step(0)   # RIGHT
"""
import csv
import difflib
import functools
import multiprocessing.forkserver
import re
from pathlib import Path

import gymnasium
import numpy as np

from episodes import quiet_workers, square_resize

ACTION_NAMES = ["RIGHT", "LEFT", "UP", "DOWN", "JUMP"]
ANNOTATIONS = Path(__file__).resolve().parent / "annotations"  # RetroAct tables (MIT, see LICENSE)
PROCGEN_GAMES = ["bigfish", "bossfight", "caveflyer", "chaser", "climber", "coinrun", "dodgeball",
                 "fruitbot", "heist", "jumper", "leaper", "maze", "miner", "ninja", "plunder", "starpilot"]
# procgen:<game> has the paper's visuals; procgen:<game>:plain drops the background pictures and keeps one
# theme per game, :mono also draws every sprite in one flat colour (CoinRun: ~2,000 colours, ~280, ~10)
PROCGEN_VISUALS = {"": {}, "plain": dict(use_backgrounds=False, restrict_themes=True),
                   "mono": dict(use_backgrounds=False, restrict_themes=True, use_monochrome_assets=True)}


class GameError(ValueError):
    """A game that cannot be played here (unknown id, ROM not imported, procgen missing); one line with the fix."""


# ---------------------------------------------------------------------------
# Environments: one small class per platform with reset() -> frame, step(a) -> (frame, reward, done)
# ---------------------------------------------------------------------------

JUMP_BUTTON = {"Nes": "A", "Snes": "B", "Genesis": "C", "Sms": "A", "GameBoy": "A", "Atari2600": "BUTTON",
               "32x": "B", "PCEngine": "I"}
JUMP_OVERRIDES = {"Airstriker-Genesis-v0": "B"}  # a shooter: JUMP is its fire button
PROCGEN_ACTION = {"RIGHT": 7, "LEFT": 1, "UP": 5, "DOWN": 3, "JUMP": 8}  # JUMP = UP-RIGHT (procgen's UP jumps)


def normalise(name):
    return re.sub(r"[^a-z0-9]", "", name.lower().removesuffix("-v0"))


@functools.lru_cache(maxsize=1)
def control_table():
    """RetroAct's 50-game control table: {normalised game: {RIGHT: 'right', ..., ACTION_JUMP: 'jump'}}."""
    with open(ANNOTATIONS / "RetroAct_v0.1_control_50.csv") as f:
        return {normalise(row["game"]): row for row in csv.DictReader(f)}


def retro_button_table(game, buttons):
    """[5, len(buttons)] int8: which buttons each of RIGHT, LEFT, UP, DOWN, JUMP presses in `game`."""
    platform = game.removesuffix("-v0").rsplit("-", 1)[-1]
    jump = JUMP_OVERRIDES.get(game, JUMP_BUTTON.get(platform))
    if jump not in buttons:
        jump = next(b for b in ("B", "A") if b in buttons)
    pressed = {"RIGHT": ["RIGHT"], "LEFT": ["LEFT"], "UP": ["UP"], "DOWN": ["DOWN"], "JUMP": [jump]}
    labels = control_table().get(normalise(game), {})
    for name in ("RIGHT", "LEFT", "UP", "DOWN"):
        if labels.get(name) == "none":  # the control table says this direction does nothing here
            pressed[name] = []
    table = np.zeros((len(ACTION_NAMES), len(buttons)), np.int8)
    for i, name in enumerate(ACTION_NAMES):
        for button in pressed[name]:
            table[i, buttons.index(button)] = 1
    return table


class RetroGame:
    """A stable-retro game with action repeat; frames padded and area-resized to `resolution`."""

    def __init__(self, game, frame_skip, resolution):
        import stable_retro
        self.env = stable_retro.make(game, render_mode=None)  # render_mode=None: headless
        self.buttons = retro_button_table(game, self.env.buttons)
        self.frame_skip, self.resolution = frame_skip, resolution

    def reset(self, seed):
        obs, _ = self.env.reset(seed=seed)
        return square_resize(obs, self.resolution)

    def step(self, action, render=True):
        total = 0.0
        for _ in range(self.frame_skip):
            obs, reward, terminated, truncated, _ = self.env.step(self.buttons[action])
            total += reward
            if terminated or truncated:
                break
        return square_resize(obs, self.resolution) if render else None, total, terminated or truncated

    def close(self):
        self.env.close()


def procgen_name(name):
    """'procgen:coinrun' -> ('coinrun', ''); 'procgen:coinrun:plain' -> ('coinrun', 'plain')."""
    game, _, visuals = name.removeprefix("procgen:").partition(":")
    return game, visuals


class ProcgenGame:
    """A procgen game (native 64x64, hard levels); each reset draws a new level from the episode seed."""

    def __init__(self, name, frame_skip, resolution, distribution_mode="hard"):
        (self.name, visuals), self.frame_skip, self.resolution, self.mode = procgen_name(name), frame_skip, resolution, distribution_mode
        self.visuals, self.env = PROCGEN_VISUALS[visuals], None

    def reset(self, seed):
        from procgen import ProcgenGym3Env
        self.env = ProcgenGym3Env(num=1, env_name=self.name, distribution_mode=self.mode,
                                  num_levels=0, start_level=0, rand_seed=int(seed % 2**31), **self.visuals)
        return self._frame(self.env.observe()[1])

    def step(self, action, render=True):
        total = 0.0
        for _ in range(self.frame_skip):
            self.env.act(np.array([PROCGEN_ACTION[ACTION_NAMES[action]]]))
            reward, obs, first = self.env.observe()
            total += float(reward[0])
            if first[0]:  # procgen resets itself: `obs` is already the next level, so the episode ends here
                return None, total, True
        return self._frame(obs) if render else None, total, False

    def _frame(self, obs):
        frame = obs["rgb"][0]
        return frame if frame.shape[0] == self.resolution else square_resize(frame, self.resolution)

    def close(self):
        self.env = None


def check_env(name):
    """Raise GameError (one line, with the fix) if `name` cannot be played on this machine."""
    if name.startswith("procgen:"):
        game, visuals = procgen_name(name)
        if game not in PROCGEN_GAMES:
            close = difflib.get_close_matches(game, PROCGEN_GAMES, n=3)
            raise GameError(f"unknown procgen game '{game}'" + (f"; did you mean {', '.join('procgen:' + c for c in close)}?" if close else f"; choose one of {', '.join(PROCGEN_GAMES)}"))
        if visuals not in PROCGEN_VISUALS:
            raise GameError(f"unknown procgen visuals '{visuals}' in {name}; use procgen:{game}, procgen:{game}:plain or procgen:{game}:mono")
        try:
            import procgen  # noqa: F401
        except ImportError:
            raise GameError(f"{name} needs procgen: pip install procgen-mirror")
        return
    import stable_retro
    games = stable_retro.data.list_games(stable_retro.data.Integrations.ALL)
    if name not in games:
        close = difflib.get_close_matches(name, games, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see stable_retro.data.list_games() or use procgen:<name>"
        raise GameError(f"unknown game '{name}'{hint}")
    try:
        stable_retro.data.get_romfile_path(name, stable_retro.data.Integrations.ALL)
    except FileNotFoundError:
        raise GameError(f"the ROM of {name} is not imported; put the ROM file in a folder and run: python -m stable_retro.import DIR")


def default_frame_skip(name):
    """Emulator frames per action when none is given: 4 for retro games, 1 for procgen (already coarse in time)."""
    return 1 if name.startswith("procgen:") else 4


def make_game(name, frame_skip, resolution):
    if name.startswith("procgen:"):
        return ProcgenGame(name, frame_skip, resolution)
    return RetroGame(name, frame_skip, resolution)


def select_games(selection):
    """RetroAct selection ('platformers', 'control50') or a file of game ids -> (playable, skipped)."""
    import stable_retro
    ids = {normalise(g): g for g in stable_retro.data.list_games(stable_retro.data.Integrations.ALL)}
    if selection == "platformers":
        with open(ANNOTATIONS / "RetroAct_v0.1.csv") as f:
            wanted = [row["game"] for row in csv.DictReader(f) if "pl" in row["tags"].split()]
    elif selection == "control50":
        wanted = [row["game"] for row in control_table().values()]
    elif Path(selection).is_file():
        wanted = [line.strip() for line in Path(selection).read_text().splitlines() if line.strip() and not line.startswith("#")]
    else:
        raise GameError(f"--games takes 'platformers', 'control50' or a file of game ids; '{selection}' is none of these")
    playable, skipped = [], []
    for game in wanted:
        name = game if game.startswith("procgen:") else ids.get(normalise(game), game)
        try:
            check_env(name)
            playable.append(name)
        except GameError as e:
            if "not imported" not in str(e):
                raise
            skipped.append(name)
    return playable, skipped


# ---------------------------------------------------------------------------
# Games as the agent sees them: action repeat with max-pooling, as gymnasium envs for the vector env
# ---------------------------------------------------------------------------

class AgentGame:
    """An envs.py game made with frame_skip=1, played with action repeat `frame_skip` (paper sec. 4).

    step() returns the last raw frame, as collect.py's games do (episodes and the reward's History
    hold it); `obs`, what the policy sees, is the pixel-wise max of the last two frames of the
    repeat (as for Atari: a sprite that flickers stays visible).
    """

    def __init__(self, game, frame_skip):
        self.game, self.frame_skip = game, frame_skip

    def reset(self, seed):
        self.obs = self.game.reset(seed)
        return self.obs

    def step(self, action):
        total, pooled = 0.0, []
        for k in range(self.frame_skip):  # only the last two frames are resized: the others are not needed
            frame, reward, done = self.game.step(action, render=k >= self.frame_skip - 2)
            total, pooled = total + reward, pooled + ([] if frame is None else [frame])
            if done:
                break
        self.obs = np.max(pooled[-2:], axis=0) if pooled else self.obs
        return frame, total, done  # frame None: the episode ended without a last picture

    def close(self):
        self.game.close()


class AgentEnv(gymnasium.Env):
    """An AgentGame as a gymnasium env, for agent.py's AsyncVectorEnv (one game per worker process).

    obs is AgentGame.obs, what the policy sees; info["frame"] is o(t), the last raw frame the reward's
    History holds. An episode is truncated after `max_steps` agent steps. The first reset takes
    seed=[seed, env index] and every later reset draws its game's seed from it.
    """

    action_space = gymnasium.spaces.Discrete(len(ACTION_NAMES))

    def __init__(self, make_env, frame_skip, max_steps, resolution):
        self.make_env, self.frame_skip, self.max_steps, self.game = make_env, frame_skip, max_steps, None
        self.observation_space = gymnasium.spaces.Box(0, 255, (resolution, resolution, 3), np.uint8)

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        # AsyncVectorEnv builds one env in the parent to read its spaces: the game opens at the first reset, in a worker
        self.game, self.steps = self.game or AgentGame(self.make_env(), self.frame_skip), 0
        return self.game.reset(int(self.rng.integers(2**31))), {}

    def step(self, action):
        frame, reward, done = self.game.step(int(action))
        self.steps += 1
        info = {"frame": self.game.obs if frame is None else frame}  # obs stands in for a missing last frame
        return self.game.obs, reward, done or frame is None, self.steps >= self.max_steps, info

    def close(self):
        if self.game:
            self.game.close()


def agent_envs(make_env, n, frame_skip, max_steps, resolution):
    """n AgentEnvs stepped in lockstep, each in a worker forked from multiprocessing's fork server, a fresh process
    (the parent never opens an emulator). SAME_STEP autoreset: a finished env's next obs is already its new
    episode's first frame."""
    with quiet_workers():  # the fork server, and so every worker it forks, leaves Ctrl-C to the main process
        multiprocessing.forkserver.ensure_running()
    return gymnasium.vector.AsyncVectorEnv([functools.partial(AgentEnv, make_env, frame_skip, max_steps, resolution)] * n,
                                           context="forkserver", autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP)


def last_frames(infos, done):
    """o(t) [N, H, W, 3] of a vector step: with SAME_STEP autoreset a finished env's info is infos["final_info"]."""
    return np.where(done[:, None, None, None], infos.get("final_info", {}).get("frame", 0), infos.get("frame", 0))
