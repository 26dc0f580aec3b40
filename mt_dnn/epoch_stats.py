"""Per-epoch running figures: train loss, time per update, passes, and what the provider did.

They are part of the checkpoint, so a resumed epoch reports the same means as an
uninterrupted one (times excepted).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class EpochStats:
    batches: int = 0
    updates: int = 0
    skipped_updates: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    seconds: float = 0.0
    forwards: int = 0
    backwards: int = 0
    perturbed_batches: int = 0
    changed_share_sum: float = 0.0
    noise_share_sum: float = 0.0
    adv_loss_sum: float = 0.0
    adv_loss_count: int = 0
    adv_skipped: int = 0

    def add(self, *, outcome, seconds: float, update_done: bool, update_skipped: bool) -> None:
        self.batches += 1
        self.seconds += seconds
        self.forwards += outcome.forwards
        self.backwards += outcome.backwards
        if outcome.task_loss == outcome.task_loss:  # not NaN
            self.loss_sum += outcome.task_loss
            self.loss_count += 1
        if update_done:
            self.updates += 1
            self.skipped_updates += int(update_skipped)
        if outcome.stats:
            self.perturbed_batches += 1
            self.changed_share_sum += outcome.stats["changed_share"]
            self.noise_share_sum += outcome.stats["noise_share"]
        if outcome.adv_loss is not None:
            self.adv_loss_sum += outcome.adv_loss
            self.adv_loss_count += 1
        self.adv_skipped += int(outcome.adv_skipped)

    def postfix(self) -> dict[str, str]:
        shown = {"loss": f"{self.loss_sum / max(1, self.loss_count):.4f}"}
        if self.perturbed_batches:
            shown["adv"] = f"{self.adv_loss_sum / max(1, self.adv_loss_count):.2e}"
            shown["changed"] = f"{100 * self.changed_share_sum / self.perturbed_batches:.0f}%"
            shown["noise"] = f"{100 * self.noise_share_sum / self.perturbed_batches:.3g}%"
        return shown

    def epoch_record(self, *, epoch: int, global_step: int) -> dict:
        updates = max(1, self.updates)
        record = {
            "kind": "train_epoch", "epoch": epoch, "global_step": global_step,
            "train_loss": self.loss_sum / self.loss_count if self.loss_count else None,
            "updates": self.updates, "skipped_updates": self.skipped_updates, "batches": self.batches,
            "seconds": round(self.seconds, 4), "seconds_per_update": self.seconds / updates,
            "forward_passes_per_update": self.forwards / updates,
            "backward_passes_per_update": self.backwards / updates,
        }
        if self.perturbed_batches:
            record["perturbation"] = {
                "changed_share": self.changed_share_sum / self.perturbed_batches,
                "noise_share": self.noise_share_sum / self.perturbed_batches,
                "adv_loss": self.adv_loss_sum / self.adv_loss_count if self.adv_loss_count else None,
                "skipped_steps": self.adv_skipped,
            }
        return record

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)
