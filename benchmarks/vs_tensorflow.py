"""The authors' TensorFlow AVAE against `avae` (PyTorch), timed side by side on the same work: the
paper's MNIST setting on Fashion-MNIST (l = 16, full-width `mnist` networks, batch 100, a KDE set
of m = 10,000 training images re-encoded every 10 steps) for `--steps` SGD steps, one training
epoch, then one validation pass and the end-of-epoch checkpoints.

    # the authors' code: https://github.com/Surojit-Utah/AVAE (a checkout, or the bare git folder
    # of a snapshot; the needed files are then read out of it with `git show`, nothing is changed)
    python3 -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install tensorflow==2.21.0 tf-keras==2.21.0 numpy scipy tqdm matplotlib
    python benchmarks/vs_tensorflow.py --matrix --authors PATH                      # the whole matrix
    python benchmarks/vs_tensorflow.py --side tf --threads 1 --busy 0 --authors PATH   # one cell
    python benchmarks/vs_tensorflow.py --side avae --precision auto --threads 2 --busy 2
    → one JSON line per cell appended to benchmarks/results/vs_tensorflow.jsonl

Every cell is one fresh process (the TensorFlow one under `--tf-python`, with TF_USE_LEGACY_KERAS=1:
under Keras 3 the authors' decoder receives no gradient). Recorded per cell: the process's wall
seconds, its CPU seconds and peak memory (os.wait4: that child alone, not the busy processes), the
training loop's wall seconds (the side's own timer around its loop), per-step timestamps (first
step, the rest), the phases before and after the loop, the load average before and after, and the
machine (`avae.hardware.machine()`).

The TensorFlow side. The authors' entry point, AVAE/Main.py, cannot be driven for N steps
unchanged: it takes its settings from the dict in config/local_config.py (MNIST: l = 8, 50
epochs), loads MNIST through `keras.datasets` (a download), imports `nvidia_smi`, and at every
epoch end writes figures and checkpoints. So a small runner (written by this script into its work
folder under /tmp, text below as TF_RUNNER) imports their modules and calls their own functions:

  - `config.local_config.configurations[2]` (their MNIST entry: 64 filters, BatchNorm in encoder
    and decoder, He-normal init, Adam 5e-4, σ₀² = 200, ...; the file closes its dict with a comma,
    which makes `configurations` a 1-tuple, so `Main.py --config_id 2` fails as the file stands and
    the runner looks inside the tuple) with latent_dim = 16, kde_samples = m
    and ori_bandwidth = 0.72, the values their file has commented out beside l = 8 / 0.54 (the
    paper's MNIST setting; avae's h_opt for l = 16, m = 10,000 is 0.720 too); the bias correction
    h = h_opt·sqrt(1/(1 + h_opt²)) as in the paper (their Main.py computes the same);
  - `models.ae_model_MNIST.Encoder` / `Decoder` (float32, the Keras default);
  - `data.dataloader_MNIST.dataloader_mnist`: an instance made without its __init__ (which downloads
    MNIST) and given the Fashion-MNIST training images, zero-padded 28×28 → 32×32 (2 pixels a
    side) and divided by 255 as their __init__ does for MNIST; then their own
    `split_train_n_val_data` and `create_kde_n_train_dataset` (m random KDE images, the other
    steps×100 shuffled into batches of 100 by tf.data);
  - `train.trainer.Train` built as Main.py builds it, and its own `run_an_epoch(..., mode='train')`
    — their training loop: every 10th step the KDE set is re-encoded in batches of 100 by the
    encoder in inference mode, then `train_step_update` (a tf.function: forward, their
    `avae_loss.autoencoder_loss` + `kld_loss_computation`, backward, Adam). The runner wraps the
    instance's `train_step_update` to timestamp each step's end (their files are not touched);
  - after the loop their `run_an_epoch(..., mode='val')` and two `tf.train.Checkpoint` saves (the
    best and the final model), as their `train_model` does after a one-epoch run. Left out there:
    their figures (avae's are off too: train.figures_every=0), the printouts, and the
    ReduceLROnPlateau callback (it acts only after validation; it also uses np.Inf, gone in NumPy 2).
  Threads: tf.config.threading intra-op and inter-op both set to `--threads` before any op runs.

The avae side: `avae.train` (public API) with data.name=fashion_mnist, data.train_size =
steps×100 + m (so the one epoch is exactly `--steps` steps), data.val_size = `--val-size`,
model.kde_size = m, model.kde_refresh_every = 10, train.batch_size = 100, train.epochs = 1,
train.threads = N, train.device = cpu, train.figures_every = 0, train.progress = false,
train.checkpoint_minutes large (no checkpoint inside the timed loop, as on the TF side), and
`--precision float32` (train.precision = model.kde_precision = float32) or `auto` (both left to
the library). Its loop time is the trainer's own `train_s`; a callback stamps each step's end.
Before torch starts, the runner does what the `avae` commands do on a busy machine: OpenMP's
threads wait passively (`machine_load.openmp_waits_passively`; recorded as "omp_wait_policy").
Records without that field were taken before it did (the first matrix in vs_tensorflow.jsonl).
What `auto` (and the layout / KDE-call settings, which are auto in both avae cells) resolved to is
recorded from the run's resolved config ("resolved"; "auto_basis" says whether a measurement or
the rules for a busy machine decided). The library caches those choices and the bandwidth in
$AVAE_CACHE_DIR (default ~/.cache/avae) once per machine and network: a choice made while the
machine was busy stays until that entry is removed (or run with AVAE_CACHE_DIR set to a fresh
folder on a quiet machine to have it measured). Unless --no-warmup, one unrecorded two-step run of
each side at 1 thread comes first and fills the caches.

Differences a reader must know:
  - Network: the same layers (4×4 convolutions 64-128-256-512 stride 2 + BatchNorm + ReLU, dense
    to l; dense to 2×2×512, transposed convolutions 256-128-64 + BatchNorm + ReLU, a transposed
    convolution to 1 channel). The authors' decoder ends in a sigmoid and its loss is the squared
    error on it; avae's decoder returns the pre-activation and its Gaussian likelihood applies
    the sigmoid. BatchNorm: eps 1e-3 and momentum 0.99 on both. Adam epsilon 1e-7 on both.
  - KDE re-encoding: the authors' runs the training encoder in inference mode on batches of 100
    in float32; avae folds BatchNorm into the convolutions and uses its own batch, layout and (in
    the `auto` cell) possibly bfloat16 autocast. The KL: the authors' computes the m distances of
    each code with a Python loop over the batch's rows inside the tf.function (100 row ops a
    step); avae computes one matrix of distances.
  - Precision: TensorFlow float32 always (their set_floatx('float32'); no mixed precision); avae
    float32 or whatever `auto` chose (recorded per cell).
  - Data: the same Fashion-MNIST IDX file, padded the same way, the same validation images (the
    first `--val-size` of the file's last 10,000). For training the TF side takes the first
    steps×100 + m images of the file, avae steps×100 + m random ones of its first 50,000. avae
    keeps images as uint8 and converts a batch at a time; the TF side holds float32 arrays in
    tf.data, as the authors' code does.
  - Per-step work outside the model: the authors' loop converts each step's losses to NumPy
    (three host syncs) and passes the 10,000×l KDE codes from NumPy into the tf.function every
    step; the first step of the TF side includes tracing the tf.function.
  - tf.data runs its own thread pool (not covered by the intra/inter-op setting); its CPU time
    is in the process's CPU seconds.

`--kde-size` exists only for smoke tests (the paper's m is 10,000; smaller m runs less work).
"""
from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from threads_under_load import busy_processes  # (benchmarks/ is on the path of a script run from it)

RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / "vs_tensorflow.jsonl"
BATCH, REFRESH_EVERY, LATENT_DIM, PAPER_KDE = 100, 10, 16, 10000
TRAIN_FILE_IMAGES, TRAIN_SPLIT = 60000, 50000  # Fashion-MNIST training file; avae trains on its first 50,000
AUTHORS_BANDWIDTH = 0.72  # their config's h_opt for l = 16 (commented beside l = 8); avae's is 0.720
MARK = "VS_TF_RESULT "
AUTHORS_FILES = (  # what the TF runner imports (their modules import each other by these names)
    "AVAE/config/local_config.py", "AVAE/models/ae_model_MNIST.py", "AVAE/data/dataloader_MNIST.py",
    "AVAE/train/trainer.py", "AVAE/loss/avae_loss.py", "AVAE/util/utils.py",
)
SIDES = (("tf", "float32"), ("avae", "float32"), ("avae", "auto"))


# --- the runners: each is one process; it prints MARK + a JSON object as its last line ---------
TF_RUNNER = r'''
import time
T0, P0 = time.time(), time.perf_counter()
import gzip, json, os, random, sys
args = json.loads(sys.argv[1])
import numpy as np
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(args["threads"])
tf.config.threading.set_inter_op_parallelism_threads(args["threads"])
sys.path.insert(0, args["authors_code"])  # their AVAE/ folder: its modules import each other by these names
from config.local_config import configurations
from models import ae_model_MNIST
from data.dataloader_MNIST import dataloader_mnist
from train import trainer
P_import = time.perf_counter()

# their Main.set_seed(run_id - 1) for run 1
random.seed(0); np.random.seed(0); tf.random.set_seed(0)

def idx_images(path):
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        raw = f.read()
    n, rows, cols = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
    return np.frombuffer(raw, np.uint8, offset=16).reshape(n, rows, cols)

steps, m, batch, n_val = args["steps"], args["kde_size"], args["batch"], args["val_size"]
images = idx_images(args["train_images"])
picked = np.concatenate([images[: steps * batch + m], images[args["val_start"] : args["val_start"] + n_val]])
padded = np.zeros((len(picked), 32, 32, 1), np.float32)  # 28x28 centred in 32x32, as their MNIST loader
padded[:, 2:30, 2:30, 0] = picked
loader = dataloader_mnist.__new__(dataloader_mnist)  # their class without its __init__ (a Keras download of MNIST)
loader.imgs_train = (padded / 255.0).astype(np.float32)
loader.train_data_count, loader.val_data_count = steps * batch + m, n_val
loader.kde_samples, loader.batch_size = m, batch
loader.train_dataset = loader.kde_dataset = loader.val_dataset = None
x_train, x_val = loader.split_train_n_val_data()
P_data = time.perf_counter()

# their file ends the dict with a comma, which makes `configurations` a 1-tuple holding it
table = configurations[0] if isinstance(configurations, tuple) else configurations
cfg = dict(table[2])  # their MNIST entry
assert cfg["dataset_name"] == "MNIST", cfg["dataset_name"]
cfg.update(latent_dim=args["latent_dim"], kde_samples=m, batch_size=batch, ori_bandwidth=args["ori_bandwidth"],
           update_q_iter_count=args["refresh_every"])
h_opt = cfg["ori_bandwidth"]
bandwidth = h_opt * np.float32(np.sqrt(1.0 / (1.0 + h_opt ** 2)))  # the paper's bias correction
encoder = ae_model_MNIST.Encoder(latent_dim=cfg["latent_dim"], num_filter=cfg["num_filter"],
                                 conv_kernel_initializer_method=cfg["conv_kernel_initializer_method"])
decoder = ae_model_MNIST.Decoder(latent_dim=cfg["latent_dim"], num_filter=cfg["num_filter"],
                                 reg_strength=cfg["dec_reg_strength"],
                                 conv_kernel_initializer_method=cfg["conv_kernel_initializer_method"])
optimizer = tf.keras.optimizers.Adam(cfg["learning_rate"])
train = trainer.Train(
    run_id=1, encoder=encoder, decoder=decoder, optimizer=optimizer, lr_schedular=None,
    encoder_use_batch_norm=cfg["encoder_use_batch_norm"], decoder_use_batch_norm=cfg["decoder_use_batch_norm"],
    train_data_noise=cfg["train_data_noise"], train_from_checkpoint=False, epochs=1,
    update_KDE_epoch_fraction=cfg["update_KDE_epoch_fraction"], update_q_iter_count=cfg["update_q_iter_count"],
    dataloader=loader, latent_dim=cfg["latent_dim"], bandwidth=bandwidth, max_cdf_epsilon=cfg["max_cdf_epsilon"],
    print_every_epoch=cfg["print_every_epoch"], save_every_epoch=cfg["save_every_epoch"], save_model_epochs=[],
    dataset_name=cfg["dataset_name"], sigma_init_val=cfg["sigma_init_val"])
train_ds, kde_ds = loader.create_kde_n_train_dataset()  # their epoch start: draw the KDE set, batch the rest
stamps, step_fn = [], train.train_step_update
def stamped(*a, **k):
    out = step_fn(*a, **k)
    stamps.append(time.perf_counter())
    return out
train.train_step_update = stamped  # on this instance only: a timestamp after each step
P_setup = time.perf_counter()

losses = train.run_an_epoch(train_ds, kde_ds, mode="train")  # their training loop, unchanged
P_loop = time.perf_counter()
val = train.run_an_epoch(train.val_dataset, kde_ds, mode="val")
P_val = time.perf_counter()
train.model_checkpoint.save(file_prefix=train.best_model_path)
train.model_checkpoint.save(file_prefix=os.path.join(train.save_model_dir, "ckpt"))
P_save = time.perf_counter()
assert len(stamps) == steps, (len(stamps), steps)
print("%s%s" % (args["mark"], json.dumps({
    "t0": T0, "import_s": P_import - P0, "data_s": P_data - P_import, "setup_s": P_setup - P_data,
    "loop_s": P_loop - P_setup, "first_step_s": stamps[0] - P_setup,
    "after_first_s": stamps[-1] - stamps[0], "steps": len(stamps), "val_s": P_val - P_loop, "save_s": P_save - P_val,
    "train_loss": float(losses[3]), "val_loss": float(val[3]),
    "resolved": {"precision": tf.keras.backend.floatx(), "keras": type(optimizer).__module__,
                 "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                 "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
                 "latent_dim": cfg["latent_dim"], "num_filter": cfg["num_filter"], "kde_size": m,
                 "refresh_every": cfg["update_q_iter_count"], "h_opt": h_opt, "h": float(bandwidth),
                 "batch_norm": [cfg["encoder_use_batch_norm"], cfg["decoder_use_batch_norm"]]},
    "versions": {"tensorflow": tf.__version__, "numpy": np.__version__, "python": sys.version.split()[0]},
})), flush=True)
'''

AVAE_RUNNER = r'''
import time
T0, P0 = time.time(), time.perf_counter()
import json, os, sys
args = json.loads(sys.argv[1])
from avae.machine_load import openmp_waits_passively  # torch-free; as the avae commands do before torch starts
openmp_waits_passively()
import avae
import torch
P_import = time.perf_counter()

class Stamps(avae.Callback):
    def __init__(self):
        self.start, self.stamps, self.record, self.config = None, [], None, None
    def on_train_start(self, info):
        self.config = info.config.to_dict()
    def on_epoch_start(self, info, epoch, steps, start):
        self.start = time.perf_counter()
    def on_step_end(self, info, step, losses):
        self.stamps.append(time.perf_counter())
    def on_epoch_end(self, info, end):
        self.record = dict(end.record)

st = Stamps()
run_dir = avae.train(None, out=args["out"], overrides=args["overrides"], callbacks=[st])
P_end = time.perf_counter()
rec, cfg = st.record, st.config
auto = json.loads((run_dir / "run.json").read_text()).get("auto", {})
print("%s%s" % (args["mark"], json.dumps({
    "t0": T0, "import_s": P_import - P0, "before_loop_s": st.start - P_import,
    "loop_s": rec["train_s"], "first_step_s": st.stamps[0] - st.start,
    "after_first_s": st.stamps[-1] - st.stamps[0], "steps": len(st.stamps), "kde_refresh_s": rec["kde_refresh_s"],
    "val_s": rec["val_s"], "after_loop_s": P_end - st.stamps[-1], "train_loss": rec["train_loss"],
    "val_loss": rec["val_loss"],
    "resolved": {"precision": cfg["train"]["precision"], "channels_last": cfg["train"]["channels_last"],
                 "kde_precision": cfg["model"]["kde_precision"], "kde_channels_last": cfg["model"]["kde_channels_last"],
                 "kde_batch": cfg["model"]["kde_batch"], "threads": rec["threads"],
                 "interop": torch.get_num_interop_threads(),
                 "latent_dim": cfg["model"]["latent_dim"], "width": cfg["model"]["width"],
                 "kde_size": cfg["model"]["kde_size"], "refresh_every": cfg["model"]["kde_refresh_every"],
                 "h_opt": rec["h_opt"], "h": rec["h"], "auto_basis": auto.get("basis"),
                 "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")},
    "versions": {"avae": avae.__version__, "torch": torch.__version__, "python": sys.version.split()[0]},
})), flush=True)
'''


# --- the cells ------------------------------------------------------------------------------
def fashion_mnist_folder(given: str | None) -> Path:
    """The folder `python3 -m avae datasets` reports for fashion_mnist (or the one given)."""
    if given:
        return Path(given)
    listing = subprocess.run([sys.executable, "-m", "avae", "datasets"], capture_output=True, text=True,
                             check=True).stdout
    found = re.search(r"^fashion_mnist\b.*?\n\s+files:.*?found in (\S+)", listing, re.M | re.S)
    if not found:
        sys.exit("vs_tensorflow: `python3 -m avae datasets` finds no Fashion-MNIST files; give --data-root")
    return Path(found.group(1))


def train_images_file(folder: Path) -> Path:
    for name in ("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte", "train-images.idx3-ubyte"):
        if (folder / name).is_file():
            return folder / name
    sys.exit(f"vs_tensorflow: no train-images-idx3-ubyte(.gz) in {folder}")


def authors_code(path: Path, work: Path) -> tuple[Path, str | None]:
    """Their AVAE/ folder: the one in a checkout, or read out of a bare git folder (a snapshot)."""
    for base in (path / "AVAE", path):  # a checkout, or its AVAE/ folder
        if base.name == "AVAE" and all((base.parent / f).is_file() for f in AUTHORS_FILES):
            commit = subprocess.run(["git", "-C", str(base), "rev-parse", "HEAD"], capture_output=True, text=True)
            return base, commit.stdout.strip() or None
    if (path / "HEAD").is_file() and (path / "objects").is_dir():
        git = ["git", f"--git-dir={path}"]
        commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        for name in AUTHORS_FILES:
            text = subprocess.run([*git, "show", f"{commit}:{name}"], capture_output=True, check=True).stdout
            (work / "authors" / name).parent.mkdir(parents=True, exist_ok=True)
            (work / "authors" / name).write_bytes(text)
        return work / "authors" / "AVAE", commit
    sys.exit(f"vs_tensorflow: {path} is neither a checkout of Surojit-Utah/AVAE nor its git folder")


def child_env(side: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # threads come from the settings
    if side == "tf":
        env.update(TF_USE_LEGACY_KERAS="1", CUDA_VISIBLE_DEVICES="-1", TF_CPP_MIN_LOG_LEVEL="2")
    return env


def run_cell(side: str, precision: str, threads: int, busy: int, args, ctx: dict, label: str) -> dict:
    """One process of one side, timed; returns its record."""
    from avae import hardware

    steps, m = args.steps, args.kde_size
    cell_dir = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=ctx["work"]))
    payload = {"mark": MARK, "steps": steps, "kde_size": m, "batch": BATCH, "val_size": args.val_size,
               "refresh_every": REFRESH_EVERY, "latent_dim": LATENT_DIM, "threads": threads}
    if side == "tf":
        payload |= {"authors_code": str(ctx["authors_code"]), "train_images": str(ctx["train_images"]),
                    "val_start": TRAIN_SPLIT, "ori_bandwidth": args.ori_bandwidth}
        argv = [args.tf_python, str(ctx["work"] / "runner_tf.py"), json.dumps(payload)]
    else:
        overrides = [
            "data.name=fashion_mnist", f"data.train_size={steps * BATCH + m}", f"data.val_size={args.val_size}",
            "model.name=avae", f"model.latent_dim={LATENT_DIM}", "model.width=1.0", f"model.kde_size={m}",
            f"model.kde_refresh_every={REFRESH_EVERY}", f"model.kde_precision={precision}",
            f"train.batch_size={BATCH}", "train.epochs=1", f"train.threads={threads}", f"train.precision={precision}",
            "train.device=cpu", "train.figures_every=0", "train.progress=false", "train.checkpoint_minutes=100000",
            "train.seed=0",
        ] + ([f"data.root={ctx['data_root']}"] if args.data_root else [])
        payload |= {"out": str(cell_dir / "run"), "overrides": overrides}
        argv = [sys.executable, str(ctx["work"] / "runner_avae.py"), json.dumps(payload)]
    log = cell_dir / "output.txt"
    load_before, busy_before = os.getloadavg(), hardware.busy_cores()
    start_wall, start = time.time(), time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=cell_dir, env=child_env(side), stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own resource use
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    load_after = os.getloadavg()
    text = log.read_text(errors="replace")
    lines = [line for line in text.splitlines() if line.startswith(MARK)]
    if proc.returncode or not lines:
        tail = "\n".join(text.splitlines()[-30:])
        raise SystemExit(f"vs_tensorflow: the {side} process failed (status {proc.returncode}); log {log}:\n{tail}")
    inner = json.loads(lines[-1][len(MARK):])
    record = {
        "time": datetime.datetime.now().isoformat(timespec="seconds"), "label": label,
        "side": side, "precision": precision, "threads": threads, "busy": busy,
        "steps": steps, "kde_size": m, "batch": BATCH, "refresh_every": REFRESH_EVERY, "latent_dim": LATENT_DIM,
        "val_size": args.val_size,
        "wall_s": round(wall, 3), "loop_s": round(inner["loop_s"], 3),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3), "cpu_user_s": round(usage.ru_utime, 3),
        "cpu_sys_s": round(usage.ru_stime, 3), "max_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "startup_s": round(inner["t0"] - start_wall, 3),
        "first_step_s": round(inner["first_step_s"], 3),
        "later_step_s": round(inner["after_first_s"] / max(inner["steps"] - 1, 1), 4),
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in load_after],
        "busy_cores_before": round(busy_before, 2),
        "phases": {k: round(v, 3) for k, v in inner.items() if k.endswith("_s")},
        "losses": {k: inner[k] for k in ("train_loss", "val_loss")},
        "resolved": inner["resolved"], "versions": inner["versions"],
        "authors_commit": ctx["authors_commit"] if side == "tf" else None,
        "machine": ctx["machine"], "command": ctx["command"],
    }
    return record


def append(record: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def show(record: dict) -> None:
    side = "tf" if record["side"] == "tf" else f"avae/{record['precision']}"
    print(f"{side:13s} threads={record['threads']} busy={record['busy']}  wall {record['wall_s']:7.1f} s  "
          f"loop {record['loop_s']:7.1f} s  cpu {record['cpu_s']:7.1f} s  first step {record['first_step_s']:5.2f} s  "
          f"later steps {record['later_step_s']:6.3f} s  load {record['loadavg_before'][0]:.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", choices=("tf", "avae"), help="one cell: this side")
    parser.add_argument("--precision", choices=("float32", "auto"), default="float32",
                        help="avae: train.precision and model.kde_precision (the TF side is float32)")
    parser.add_argument("--threads", type=int, default=1,
                        help="one cell: threads (TF intra- and inter-op; avae train.threads)")
    parser.add_argument("--busy", type=int, default=0, help="one cell: spinning processes beside it")
    parser.add_argument("--matrix", action="store_true",
                        help="every cell: busy x threads x (tf, avae float32, avae auto), sides in rotating order")
    parser.add_argument("--busy-levels", default="0,2,4", help="--matrix: busy processes")
    parser.add_argument("--thread-counts", default="1,2", help="--matrix: threads")
    parser.add_argument("--repeats", type=int, default=1, help="--matrix: times through the whole matrix")
    parser.add_argument("--steps", type=int, default=100, help="SGD steps of batch 100 (one epoch)")
    parser.add_argument("--kde-size", type=int, default=PAPER_KDE,
                        help="m; for smoke tests only (the paper's is 10,000)")
    parser.add_argument("--val-size", type=int, default=1000,
                        help="validation images after the loop (a multiple of 100)")
    parser.add_argument("--authors", help="the authors' repository: a checkout or its bare git folder (needed for tf)")
    parser.add_argument("--tf-python", default="/tmp/tfenv/bin/python", help="Python of the TensorFlow environment")
    parser.add_argument("--ori-bandwidth", type=float, default=AUTHORS_BANDWIDTH,
                        help="TF side: their ori_bandwidth (h_opt)")
    parser.add_argument("--data-root", help="folder of the Fashion-MNIST IDX files (default: where avae finds them)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the unrecorded two-step run of each side")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (runs, logs, runners)")
    parser.add_argument("--dry-run", action="store_true", help="print the cells in the order they would run, and stop")
    parser.add_argument("--out", type=Path, default=OUT, help="JSON lines file the cells are appended to")
    args = parser.parse_args()

    if args.matrix == bool(args.side):
        parser.error("give --side (one cell) or --matrix")
    if args.val_size < BATCH or args.val_size % BATCH:
        parser.error(f"--val-size must be a positive multiple of {BATCH}")
    if args.steps < 2 or args.steps * BATCH + args.kde_size > TRAIN_SPLIT:
        parser.error(f"--steps x {BATCH} + --kde-size must be at most {TRAIN_SPLIT} (and --steps at least 2)")
    if args.val_size > TRAIN_FILE_IMAGES - TRAIN_SPLIT:
        parser.error(f"--val-size must be at most {TRAIN_FILE_IMAGES - TRAIN_SPLIT}")
    if args.matrix:
        cells = []
        for repeat in range(args.repeats):
            for busy in map(int, args.busy_levels.split(",")):
                for threads in map(int, args.thread_counts.split(",")):
                    turn = len(cells) // len(SIDES)
                    order = SIDES[turn % len(SIDES):] + SIDES[: turn % len(SIDES)]  # rotate who goes first
                    cells += [(busy, threads, side, precision, repeat) for side, precision in order]
    else:
        cells = [(args.busy, args.threads, args.side, args.precision if args.side == "avae" else "float32", 0)]
    if args.dry_run:
        for busy, threads, side, precision, repeat in cells:
            print(f"repeat {repeat}  busy {busy}  threads {threads}  {side if side == 'tf' else 'avae/' + precision}")
        return
    needs_tf = any(side == "tf" for _, _, side, _, _ in cells)
    if needs_tf and not args.authors:
        parser.error("the tf side needs --authors PATH (https://github.com/Surojit-Utah/AVAE)")
    if needs_tf and not Path(args.tf_python).is_file():
        parser.error(f"no Python at {args.tf_python}; make the TensorFlow environment first (see the docstring)")

    from avae import hardware

    work = Path(tempfile.mkdtemp(prefix="vs_tensorflow-"))
    (work / "runner_tf.py").write_text(TF_RUNNER)
    (work / "runner_avae.py").write_text(AVAE_RUNNER)
    data_root = fashion_mnist_folder(args.data_root)
    ctx = {"work": work, "data_root": data_root, "train_images": train_images_file(data_root),
           "authors_code": None, "authors_commit": None, "machine": hardware.machine(),
           "command": "python benchmarks/vs_tensorflow.py " + " ".join(sys.argv[1:])}
    if needs_tf:
        ctx["authors_code"], ctx["authors_commit"] = authors_code(Path(args.authors).resolve(), work)
    print(f"work folder {work}; {len(cells)} cell(s), {args.steps} steps, m = {args.kde_size}; "
          f"results -> {args.out}", flush=True)
    try:
        if not args.no_warmup:  # fills caches (bandwidth, avae's auto choices, bytecode, page cache); not recorded
            warm = argparse.Namespace(**{**vars(args), "steps": 2})
            for side, precision in dict.fromkeys((side, precision) for _, _, side, precision, _ in cells):
                run_cell(side, precision, 1, 0, warm, ctx, f"warmup-{side}-{precision}")
            print("warm-up done", flush=True)
        for busy, level in itertools.groupby(cells, key=lambda cell: cell[0]):
            with busy_processes(busy):  # the spinners stay for every cell of a busy level
                for _, threads, side, precision, repeat in level:
                    record = run_cell(side, precision, threads, busy, args, ctx, f"{side}-{precision}-t{threads}-b{busy}")
                    record["repeat"] = repeat
                    append(record, args.out)
                    show(record)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
