"""The multi-task training loop: updates, evaluation after every epoch, checkpoints, resume.

The loop's position (epoch, batch within the epoch, update count), the optimiser,
scheduler, running epoch figures and every rank's RNGs are checkpointed at update
boundaries, and the batch order is a function of (seed, epoch); so ``--resume`` continues
exactly where the run stopped and, on CPU, ends with the same weights as an uninterrupted
run with the same number of processes.

Under ``torchrun`` the step-1 pass goes through DistributedDataParallel and everything else
(step 2, the providers' inner passes, evaluation) through the bare module, so DDP sees one
forward per backward. Every decision that changes what a rank does next (skip an update,
stop on a signal) is agreed by all ranks first, so they can never drift apart or deadlock.

A non-finite task loss or gradient skips the update (counted as ``skipped_updates``); no
checkpoint is written while the last update was bad or the weights are not finite, so the
newest checkpoint is always a good one; ``--max_bad_steps`` consecutive bad updates stop
the run with one line naming that checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from mt_dnn.batching import collate, plan_epoch, shard_indices
from mt_dnn.checkpoint import CheckpointError, CheckpointManager, read_checkpoint
from mt_dnn.distributed import any_rank, barrier, broadcast_object, gather_objects, shutdown
from mt_dnn.epoch_eval import evaluate_epoch
from mt_dnn.epoch_stats import EpochStats
from mt_dnn.export import export_after_training
from mt_dnn.optimizer import build_optimizer, no_forward_buffer_sync
from mt_dnn.precision import autocast_factory, enable_fast_matmul, grad_scaler
from mt_dnn.rng_state import capture_rng_state, restore_rng_state
from mt_dnn.run_files import atomic_write_json
from mt_dnn.tensorboard_log import metrics_log
from mt_dnn.run_folder import finished_summary, start_run_folder
from mt_dnn.run_setup import RunSetup, prepare_run
from mt_dnn.run_summary import best_epoch, selection_rule, time_summary
from mt_dnn.schedule import build_scheduler
from mt_dnn.errors import UserError
from mt_dnn.stop_request import StopRequest
from mt_dnn.training_step import run_training_step

logger = logging.getLogger(__name__)

__all__ = ["Trainer", "build_optimizer", "train"]  # build_optimizer: imported from here by benchmarks


class Trainer:
    def __init__(self, setup: RunSetup) -> None:
        self.s = setup
        config = setup.config
        self.config = config
        enable_fast_matmul(setup.device)
        self.module = setup.model
        # step 2 runs through ``compiled`` (never DDP); step 1 through ``model``
        self.compiled = torch.compile(self.module, dynamic=True) if config.compile else self.module
        self.model = self.compiled
        if setup.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(
                self.compiled, device_ids=[setup.device.index] if setup.device.type == "cuda" else None,
                # each batch goes through one task's head; the other heads get no gradient
                find_unused_parameters=len(setup.train_data) > 1,
                # the encoders' buffers are constants (position ids); syncing them every
                # forward would only add a collective
                **no_forward_buffer_sync(),
            )
        self.autocast = autocast_factory(amp=config.amp, device=setup.device)
        self.scaler = grad_scaler(amp=config.amp, device=setup.device)
        self.optimizer = build_optimizer(self.module, learning_rate=config.learning_rate,
                                         weight_decay=config.weight_decay)
        self.batches_per_epoch = len(self._plan(0))
        if self.batches_per_epoch == 0:
            raise UserError("--train_datasets: no training batch (too few examples for the number of processes)")
        self.updates_per_epoch = math.ceil(self.batches_per_epoch / config.grad_accumulation)
        self.total_updates = self.updates_per_epoch * config.epochs
        self.scheduler = build_scheduler(optimizer=self.optimizer, total_steps=self.total_updates,
                                         warmup=config.warmup)
        self.special_ids = torch.tensor(sorted(set(setup.tokenizer.all_special_ids)), device=setup.device)
        self.pad_id = setup.tokenizer.pad_token_id if setup.tokenizer.pad_token_id is not None else 0
        self.checkpoints = CheckpointManager(setup.output_dir / "checkpoints", keep_last=config.keep_checkpoints)
        self.metrics = metrics_log(setup.output_dir, tensorboard=getattr(config, "tensorboard", False))
        self.is_main = setup.dist.is_main
        # position
        self.epoch, self.next_batch, self.global_step = 0, 0, 0
        self.bad_steps = 0
        self.best_score: float | None = None
        self.stats = EpochStats()
        self._saved_at: tuple | None = None  # position of the newest checkpoint written
        # wall time of earlier sessions of this run (up to the checkpoint resumed) and of this one
        self._earlier_wall_time, self._started = 0.0, time.perf_counter()

    def _wall_time(self) -> float:
        return round(self._earlier_wall_time + time.perf_counter() - self._started, 3)

    # -- plan ---------------------------------------------------------------------------------
    def _plan(self, epoch: int):
        return plan_epoch(train_data=self.s.train_data, batch_size=self.config.batch_size, seed=self.config.seed,
                          epoch=epoch, mode=self.config.batching, min_batch_size=self.s.dist.world_size)

    # -- checkpoints --------------------------------------------------------------------------
    def _position(self) -> tuple:
        return (self.epoch, self.next_batch, self.global_step)

    def _state(self, rng_states: list, stats_states: list) -> dict:
        return {
            "model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "rng": rng_states,  # one per rank, in rank order
            "progress": {"epoch": self.epoch, "next_batch": self.next_batch, "global_step": self.global_step,
                         "bad_steps": self.bad_steps, "wall_time_s": self._wall_time()},
            "epoch_stats": stats_states,  # one per rank, in rank order
            "metrics_count": self.metrics.count() if self.is_main else 0,
            "best_score": self.best_score if self.best_score is not None else float("nan"),
        }

    def _weights_finite(self) -> bool:
        return bool(torch.stack([torch.isfinite(p).all() for p in self.module.parameters()]).all())

    def save_checkpoint(self) -> Path | None:
        """Checkpoint the current position (all ranks call this); None when it is not written.

        Nothing is written while the last update was bad or the weights are not finite: such
        a checkpoint would rotate out a good one (every rank takes the same decision, since
        the skip decisions are agreed and the weights are identical).
        """
        if self._saved_at == self._position():
            return None
        if self.bad_steps or not self._weights_finite():
            logger.warning("update %d: not checkpointing, the last update had a non-finite loss, gradient or "
                           "weights; the newest checkpoint stays %s", self.global_step, self.newest_checkpoint())
            return None
        rng_states = gather_objects(self.s.dist, capture_rng_state())
        stats_states = gather_objects(self.s.dist, self.stats.state_dict())
        path = None
        if self.is_main:
            info = {"epoch": self.epoch, "next_batch": self.next_batch, "global_step": self.global_step}
            path = self.checkpoints.save(self._state(rng_states, stats_states), step=self.global_step, info=info)
            logger.info("checkpoint %s (update %d)", path, self.global_step)
        self._saved_at = self._position()
        barrier(self.s.dist)
        return path

    def newest_checkpoint(self) -> str:
        found = self.checkpoints.step_checkpoints()
        return str(found[0]) if found else "none (no checkpoint written yet)"

    def resume(self) -> None:
        found, problem = None, None
        if self.is_main:
            self.checkpoints.clean_partial_files()
            try:
                found = self.checkpoints.load_latest(map_location=self.s.device)
            except CheckpointError as exc:
                problem = str(exc)
        # Rank 0 picks the checkpoint (falling back past corrupt ones, saying so) and tells
        # the other ranks which, or why there is none, so that all resume from one state.
        chosen, problem = broadcast_object(self.s.dist, (str(found[0]) if found else None, problem))
        if problem:
            raise CheckpointError(problem)
        if chosen is None:
            logger.info("--resume: no checkpoint yet in %s; starting from the beginning", self.checkpoints.folder)
            if self.is_main:
                self.metrics.truncate(0)
            return
        if self.is_main:
            path, state = found
        else:
            path = Path(chosen)
            state = read_checkpoint(path, map_location=self.s.device)
        self._load_state(path, state)

    def _load_state(self, path: Path, state: dict) -> None:
        required = ("model", "optimizer", "scheduler", "scaler", "rng", "progress", "epoch_stats", "metrics_count",
                    "best_score")
        missing = [key for key in required if key not in state]
        if missing:
            raise CheckpointError(f"{path}: not a training checkpoint of this program (missing {', '.join(missing)})")
        if len(state["rng"]) != self.s.dist.world_size:
            raise UserError(f"--resume: {path} was written by {len(state['rng'])} processes, not "
                            f"{self.s.dist.world_size}; resume with the same number")
        try:
            self.module.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if self.scaler is not None and state["scaler"]:
                self.scaler.load_state_dict(state["scaler"])
        except (RuntimeError, ValueError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"{path}: does not fit this model or optimiser ({first})") from None
        restore_rng_state(state["rng"][self.s.dist.rank])
        progress = state["progress"]
        self.epoch, self.next_batch = progress["epoch"], progress["next_batch"]
        self.global_step, self.bad_steps = progress["global_step"], progress["bad_steps"]
        self._earlier_wall_time = float(progress.get("wall_time_s", 0.0))  # absent in older checkpoints
        stats = state["epoch_stats"]
        self.stats.load_state_dict(stats[self.s.dist.rank] if isinstance(stats, list) else stats)
        best = float(state["best_score"])
        self.best_score = None if math.isnan(best) else best
        self._saved_at = self._position()
        if self.is_main:
            self.metrics.truncate(int(state["metrics_count"]))
        logger.info("resumed from %s: epoch %d, batch %d, update %d", path, self.epoch + 1, self.next_batch,
                    self.global_step)

    # -- training -----------------------------------------------------------------------------
    def _group_size(self, plan, start: int) -> int:
        """Examples in the accumulation group starting at batch ``start`` (the gradient's denominator)."""
        group = plan[start : start + self.config.grad_accumulation]
        return sum(len(b.indices) for b in group)

    def _update(self, *, skip: bool) -> bool:
        """Clip and step; False (update skipped) when ``skip`` or the gradient is not finite.

        The gradient is cleared and the schedule advances either way, so a skipped update
        leaves nothing behind for the next one.
        """
        finite = False
        if not skip:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            params = [p for p in self.module.parameters() if p.grad is not None]
            if self.config.grad_clip > 0:
                norm = torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
            else:
                norm = torch.linalg.vector_norm(torch.stack([p.grad.detach().norm() for p in params]))
            # after DDP's all-reduce the gradient, hence this decision, is the same on every rank
            finite = bool(torch.isfinite(norm))
            if self.scaler is not None:
                self.scaler.step(self.optimizer)  # skips by itself on inf; it also adjusts its scale
                self.scaler.update()
            elif finite:
                self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return finite

    def train_epoch(self, stop: StopRequest) -> str | None:
        """Run the rest of the current epoch; returns why it stopped early, or None."""
        config, dist, device = self.config, self.s.dist, self.s.device
        plan = self._plan(self.epoch)
        self.model.train()
        bar = tqdm(total=len(plan), initial=self.next_batch, desc=f"epoch {self.epoch + 1}/{config.epochs}",
                   disable=config.no_progress or not self.is_main, dynamic_ncols=True)
        group_total = None
        group_bad = False
        while self.next_batch < len(plan):
            position = self.next_batch
            in_group = position % config.grad_accumulation
            if in_group == 0:
                group_total = self._group_size(plan, position)
                group_bad = False
            is_last_in_group = in_group == config.grad_accumulation - 1 or position == len(plan) - 1
            planned = plan[position]
            data = self.s.train_data[planned.task]
            shard = shard_indices(planned.indices, rank=dist.rank, world_size=dist.world_size)
            batch = {k: v.to(device, non_blocking=True) for k, v in collate(data, shard, pad_token_id=self.pad_id).items()}
            sync = contextlib.nullcontext() if (is_last_in_group or not dist.enabled) else self.model.no_sync()
            started = time.perf_counter()
            finite = True
            with sync:
                outcome = run_training_step(
                    model=self.model, forward_model=self.module, provider=self.s.provider, batch=batch,
                    task=self.s.tasks[planned.task], adv_alpha=config.perturbation_options.get("adv_alpha", 0.0),
                    special_ids=self.special_ids, normaliser=group_total / dist.world_size,
                    autocast=self.autocast,
                    backward=(lambda loss: self.scaler.scale(loss).backward()) if self.scaler is not None else None,
                    adv_model=self.compiled,
                )
            self.next_batch += 1
            # a non-finite loss poisons the gradient of its whole accumulation group
            group_bad = group_bad or not math.isfinite(outcome.task_loss)
            stop_requested = False
            if is_last_in_group:
                group_bad, stop_requested = any_rank(dist, [group_bad, stop.requested], device=device)
                finite = self._update(skip=group_bad)
                self.global_step += 1
                self.bad_steps = 0 if finite else self.bad_steps + 1
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
            self.stats.add(outcome=outcome, seconds=time.perf_counter() - started, update_done=is_last_in_group,
                           update_skipped=is_last_in_group and not finite, examples=len(shard),
                           share=len(shard) / len(planned.indices))
            bar.update(1)
            bar.set_postfix(self.stats.postfix(), refresh=False)
            if not is_last_in_group:
                continue
            if self.bad_steps >= config.max_bad_steps:
                bar.close()
                return "bad_steps"
            if config.save_every and self.global_step % config.save_every == 0:
                self.save_checkpoint()
            if config.stop_at_step and self.global_step >= config.stop_at_step:
                bar.close()
                return "stop_at_step"
            if stop_requested:
                bar.close()
                return "signal"
        bar.close()
        return None

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self) -> float | None:
        """Evaluate every --test_datasets split, log metrics; the pooled dev score (mean over tasks)."""
        return evaluate_epoch(setup=self.s, module=self.module, autocast=self.autocast, pad_id=self.pad_id,
                              metrics=self.metrics, epoch=self.epoch + 1, global_step=self.global_step)

    def end_epoch(self) -> None:
        per_rank = gather_objects(self.s.dist, self.stats.state_dict())
        record = self.stats.summed_over(per_rank).epoch_record(epoch=self.epoch + 1, global_step=self.global_step)
        if self.is_main:
            self.metrics.append(record)
        score = self.evaluate()
        good = not self.bad_steps and score is not None and math.isfinite(score)
        if good and (self.best_score is None or score > self.best_score):
            self.best_score = score
            if self.is_main:
                self.checkpoints.save_best({"model": self.module.state_dict()},
                                           info={"epoch": self.epoch + 1, "global_step": self.global_step,
                                                 "pooled_dev_accuracy": score, "pooled_dev_score": score})
        self.epoch += 1
        self.next_batch = 0
        self.stats = EpochStats()
        self.save_checkpoint()

    def run(self) -> dict:
        self._started = time.perf_counter()
        if self.s.continuing:
            done = finished_summary(self.s.output_dir)
            if done is not None:  # nothing to do; its summary (and wall time) stay as they are
                logger.info("--resume: %s is already finished; nothing to do", self.s.output_dir)
                return done
            self.resume()
        stopped = None
        stop_at = self.config.stop_at_step
        with StopRequest() as stop:
            while self.epoch < self.config.epochs:
                if stop_at and self.global_step >= stop_at:
                    # resumed at or past --stop_at_step: the same command again makes no further update
                    stopped = "stop_at_step"
                    break
                stopped = self.train_epoch(stop) if self.next_batch < self.batches_per_epoch else None
                if stopped is not None:
                    break
                self.end_epoch()
                if self.epoch < self.config.epochs and any_rank(self.s.dist, [stop.requested], device=self.s.device)[0]:
                    stopped = "signal"
                    break
            if stopped not in (None, "bad_steps"):
                self.save_checkpoint()  # still inside: a second SIGTERM must not cut this short
        summary = {"finished": stopped is None, "epochs": self.epoch, "updates": self.global_step,
                   "total_updates": self.total_updates, "wall_time_s": self._wall_time()}
        if stopped == "bad_steps":
            raise UserError(f"stopped after {self.bad_steps} consecutive updates with a non-finite loss or gradient "
                            f"(--max_bad_steps {self.config.max_bad_steps}); last good checkpoint: "
                            f"{self.newest_checkpoint()}")
        if stopped is not None:
            summary["stopped_at_step"] = self.global_step
            summary["stop_reason"] = stopped
            if stopped == "signal":
                summary["signal"] = stop.signal_name or "SIGTERM"  # another rank may have received it
            logger.info("stopped (%s) at update %d; continue with --resume", stopped, self.global_step)
            return summary
        if self.is_main:
            records = self.metrics.read()
            summary.update(time_summary(records))
            summary["best_dev_accuracy"] = self.best_score  # the selection score (older name)
            summary["best_dev_score"] = self.best_score
            summary["model_selection"] = selection_rule({ref.task: self.s.tasks[ref.task] for ref in self.s.eval_data})
            summary["best_epoch"] = best_epoch(records)
            atomic_write_json(self.s.output_dir / "run_summary.json", summary)
        return summary


def train(*, config) -> dict:
    setup = prepare_run(config)  # rank 0 now holds the output folder's lock
    try:
        trainer = Trainer(setup)  # its checks, too, come before anything is written
        start_run_folder(setup)
        summary = trainer.run()
        export_after_training(setup=setup, summary=summary)  # RUN/hf_model/ (unless --no_export)
        # every rank waits for rank 0's export: a rank that tore its process group down while rank 0
        # was still exporting was seen to abort in gloo's teardown (exit -6), failing the whole job
        barrier(setup.dist)
        return summary
    finally:
        if setup.lock is not None:
            setup.lock.release()
        shutdown(setup.dist)
