"""Per-epoch running figures: train loss, time per update, passes, and what the provider did.

They are part of the checkpoint (one copy per rank), so a resumed epoch reports the same
means as an uninterrupted one (times excepted). Under ``torchrun`` every rank sees only its
share of each batch; it weights its per-batch figures by that share (its examples / the
batch's examples) and the epoch record sums the weighted figures over all ranks, so the
record equals what one process would report for the same global batches.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

# Figures that differ between ranks and are summed over ranks for the epoch record; the
# others (batches, updates, passes, skipped updates) are the same on every rank.
_PER_RANK = ("examples", "loss_sum", "loss_count", "perturbed_batches", "changed_share_sum", "noise_share_sum",
             "adv_loss_sum", "adv_loss_count", "adv_skipped")

# What every provider reports (perturbation_stats); anything else in a step's stats is the
# provider's own figure and is averaged under its own name.
_SHARE_STATS = ("changed_share", "noise_share", "changed_tokens", "perturbable_tokens")


@dataclass
class EpochStats:
    batches: int = 0
    updates: int = 0
    skipped_updates: int = 0
    examples: int = 0
    loss_sum: float = 0.0
    loss_count: float = 0.0
    seconds: float = 0.0
    forwards: int = 0
    backwards: int = 0
    perturbed_batches: float = 0.0
    changed_share_sum: float = 0.0
    noise_share_sum: float = 0.0
    adv_loss_sum: float = 0.0
    adv_loss_count: float = 0.0
    adv_skipped: float = 0.0
    # A provider's own per-batch figures (Perturbation.extra_stats), weighted like the shares.
    extra_sums: dict = field(default_factory=dict)

    def add(self, *, outcome, seconds: float, update_done: bool, update_skipped: bool,
            examples: int, share: float = 1.0) -> None:
        """One (micro-)batch; ``share`` is this rank's part of the global batch (1 in one process)."""
        self.batches += 1
        self.examples += examples
        self.seconds += seconds
        self.forwards += outcome.forwards
        self.backwards += outcome.backwards
        # The losses are means over this rank's examples: weighted by examples, the epoch's figure
        # is the mean over its examples whatever the batch and shard sizes (a short last batch,
        # accumulated micro-batches of unequal sizes, uneven ranks).
        if outcome.task_loss == outcome.task_loss:  # not NaN
            self.loss_sum += examples * outcome.task_loss
            self.loss_count += examples
        if update_done:
            self.updates += 1
            self.skipped_updates += int(update_skipped)
        if outcome.stats:
            self.perturbed_batches += share
            self.changed_share_sum += share * outcome.stats["changed_share"]
            self.noise_share_sum += share * outcome.stats["noise_share"]
            for name, value in outcome.stats.items():
                if name not in _SHARE_STATS:
                    self.extra_sums[name] = self.extra_sums.get(name, 0.0) + share * value
        if outcome.adv_loss is not None:
            self.adv_loss_sum += examples * outcome.adv_loss
            self.adv_loss_count += examples
        self.adv_skipped += share * int(outcome.adv_skipped)

    def postfix(self) -> dict[str, str]:
        shown = {"loss": f"{self.loss_sum / max(1e-12, self.loss_count):.4f}"}
        if self.perturbed_batches:
            shown["adv"] = f"{self.adv_loss_sum / max(1e-12, self.adv_loss_count):.2e}"
            shown["changed"] = f"{100 * self.changed_share_sum / self.perturbed_batches:.0f}%"
            shown["noise"] = f"{100 * self.noise_share_sum / self.perturbed_batches:.3g}%"
        if self.skipped_updates:
            shown["skipped"] = str(self.skipped_updates)
        return shown

    def summed_over(self, per_rank: list[dict]) -> "EpochStats":
        """These stats with the per-rank figures replaced by their sum over ``per_rank`` (state dicts)."""
        total = EpochStats(**self.state_dict())
        for name in _PER_RANK:
            setattr(total, name, sum(state.get(name, 0) for state in per_rank))
        names = sorted({name for state in per_rank for name in state.get("extra_sums", {})})
        total.extra_sums = {name: sum(state.get("extra_sums", {}).get(name, 0.0) for state in per_rank)
                            for name in names}
        return total

    def epoch_record(self, *, epoch: int, global_step: int) -> dict:
        updates = max(1, self.updates)
        record = {
            "kind": "train_epoch", "epoch": epoch, "global_step": global_step,
            "train_loss": self.loss_sum / self.loss_count if self.loss_count else None,
            "updates": self.updates, "skipped_updates": self.skipped_updates, "batches": self.batches,
            "examples": self.examples,
            "seconds": round(self.seconds, 4), "seconds_per_update": self.seconds / updates,
            "forward_passes_per_update": self.forwards / updates,
            "backward_passes_per_update": self.backwards / updates,
        }
        if self.perturbed_batches:
            record["perturbation"] = {
                "changed_share": self.changed_share_sum / self.perturbed_batches,
                "noise_share": self.noise_share_sum / self.perturbed_batches,
                "adv_loss": self.adv_loss_sum / self.adv_loss_count if self.adv_loss_count else None,
                # a step counts in proportion to the share of its examples whose term was skipped
                "skipped_steps": int(round(self.adv_skipped)),
            }
            for name, value in sorted(self.extra_sums.items()):
                record["perturbation"][name] = value / self.perturbed_batches
        return record

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        known = {f.name for f in fields(self)}
        for key, value in state.items():
            if key in known:
                setattr(self, key, value)
