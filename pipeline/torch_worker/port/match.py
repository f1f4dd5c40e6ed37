"""Pair the Keras layers' weight slots with the torch module's weighted submodules (no torch import).

Explicit pairs from the config's `weight_mapping` come first. The rest pair by order within each kind:
the n-th Keras conv with the n-th torch conv in the order the port's forward calls them (modules it
never calls follow, in definition order). The transfer then checks every pair's shapes, so a reordered
port fails loudly and `weight_mapping` pins the pairs; nothing is guessed from shapes alone.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import ConfigError
from pipeline.torch_worker.port.rules import Slot


@dataclass
class TorchSite:
    name: str  # dotted, as named_modules() gives it
    kind: str | None
    cls: str
    num_layers: int = 1  # an RNN's stacked layers, each taking one Keras layer
    params: dict[str, tuple] = field(default_factory=dict)


@dataclass
class Pairing:
    pairs: list[tuple[list[Slot], TorchSite]] = field(default_factory=list)
    tf_left: list[Slot] = field(default_factory=list)
    torch_left: list[TorchSite] = field(default_factory=list)


def pair(slots: list[Slot], sites: list[TorchSite], mapping: dict[str, str]) -> Pairing:
    result = Pairing()
    by_name = {s.name: s for s in sites}
    pinned: dict[str, list[Slot]] = {}
    free_slots: list[Slot] = []
    for slot in slots:
        target = mapping.get(slot.label.replace(" (", "/").rstrip(")")) or mapping.get(slot.layer["name"])
        if target is None:
            free_slots.append(slot)
        else:
            pinned.setdefault(target, []).append(slot)
    _check_mapping(mapping, slots, by_name)
    for target, chosen in pinned.items():
        result.pairs.append((chosen, by_name[target]))
    free_sites = [s for s in sites if s.name not in pinned]
    for kind in dict.fromkeys(s.kind for s in free_slots):
        queue = [s for s in free_slots if s.kind == kind]
        if kind is None:
            result.tf_left += queue
            continue
        for site in (s for s in free_sites if s.kind == kind):
            if not queue:
                break
            take = site.num_layers if kind == "rnn" else 1
            result.pairs.append((queue[:take], site))
            queue = queue[take:]
        result.tf_left += queue
    paired = {site.name for _, site in result.pairs}
    result.torch_left = [s for s in sites if s.name not in paired]
    order = {slot.label: i for i, slot in enumerate(slots)}
    result.pairs.sort(key=lambda p: order[p[0][0].label])
    result.tf_left.sort(key=lambda s: order[s.label])
    return result


def _check_mapping(mapping: dict[str, str], slots: list[Slot], sites: dict[str, TorchSite]) -> None:
    layer_names = {s.layer["name"] for s in slots} | {s.label.replace(" (", "/").rstrip(")") for s in slots}
    problems = []
    for tf_name, torch_name in mapping.items():
        if tf_name not in layer_names:
            problems.append(f"no Keras layer with weights is named '{tf_name}'{_close(tf_name, layer_names)}")
        if torch_name not in sites:
            problems.append(
                f"the torch module has no weighted submodule '{torch_name}'{_close(torch_name, sites)}"
            )
    if problems:
        raise ConfigError("weight_mapping: " + "; ".join(problems))


def _close(name: str, names: Any) -> str:
    found = difflib.get_close_matches(name, list(names), n=1)
    return f" (did you mean '{found[0]}'?)" if found else ""
