"""What a Ray cluster can provide a trial: ``gpus_per_trial: auto`` resolved, and the trial's placement group checked
against the nodes that exist or can be launched, before Tune starts.

Two sources describe the nodes:

- the **launcher's node types**, when the driver runs on a head started by ``ray up``: Ray writes the cluster config
  (with every node type's ``resources``) to ``~/ray_bootstrap_config.yaml`` there. With ``min_workers: 0`` no GPU node
  exists when the sweep starts, so only the node types say what the autoscaler can launch;
- the **live nodes** (``ray.nodes()``), everywhere else (a local Ray, a manually started cluster).

A placement group fits a node when, for every resource, the sum over its bundles is at most the node's amount. A
trial whose group fits no node type and no live node would wait forever in PENDING; it is refused instead.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from sweeper.config import ConfigError

log = logging.getLogger(__name__)

LAUNCHER_CONFIG_ENV = "SWEEPER_LAUNCHER_CONFIG"
LAUNCHER_CONFIG = "~/ray_bootstrap_config.yaml"
EPS = 1e-9

Resources = Mapping[str, float]


def launcher_config_path() -> Path | None:
    """The launcher config of the head this driver runs on (``SWEEPER_LAUNCHER_CONFIG``, else
    ``~/ray_bootstrap_config.yaml``), or ``None`` when there is none."""
    path = Path(os.path.expanduser(os.environ.get(LAUNCHER_CONFIG_ENV) or LAUNCHER_CONFIG))
    return path if path.is_file() else None


def launcher_node_types(config: Mapping[str, Any]) -> dict[str, dict[str, float] | None]:
    """Each node type the launcher can start (``max_workers > 0``, or the head) → its declared ``resources``, or
    ``None`` when they do not state a CPU count (then what the node has is unknown until it runs)."""
    head = config.get("head_node_type")
    out: dict[str, dict[str, float] | None] = {}
    for name, node_type in (config.get("available_node_types") or {}).items():
        if name != head and int(node_type.get("max_workers", config.get("max_workers", 0)) or 0) <= 0:
            continue
        declared = {k: float(v) for k, v in (node_type.get("resources") or {}).items()}
        out[name] = declared if "CPU" in declared else None
    return out


def load_launcher_node_types(path: Path | None = None) -> dict[str, dict[str, float] | None] | None:
    """:func:`launcher_node_types` of the launcher config at ``path`` (default :func:`launcher_config_path`);
    ``None`` when the driver is not on a launcher head."""
    path = path or launcher_config_path()
    if path is None:
        return None
    return launcher_node_types(yaml.safe_load(path.read_text()) or {})


def live_nodes() -> dict[str, dict[str, float]]:
    """Each alive Ray node (``NodeManagerAddress/NodeID``) → its total resources; none when Ray is not initialised."""
    import ray

    if not ray.is_initialized():
        return {}
    return {
        f"{n.get('NodeManagerAddress')}/{n.get('NodeID', '')[:8]}": {k: float(v) for k, v in n["Resources"].items()}
        for n in ray.nodes()
        if n.get("Alive")
    }


def resolve_gpus_per_trial(
    value: float | str,
    node_types: Mapping[str, Resources | None] | None,
    live: Mapping[str, Resources],
    head_type: str | None = None,
) -> float:
    """``value`` as a number. ``"auto"``: 1 when the cluster *can* provide a GPU, else 0, decided by the launcher's
    ``node_types`` when given (what the autoscaler can launch), else by the ``live`` nodes.

    Raises:
        ConfigError: ``auto`` on a launcher whose node types do not state their resources (and none states a GPU).
    """
    if value != "auto":
        return float(value)
    if node_types is not None:
        workers = {k: v for k, v in node_types.items() if k != head_type} or dict(node_types)
        if any(r is not None and r.get("GPU", 0) > 0 for r in workers.values()):
            return 1.0
        unknown = sorted(k for k, r in workers.items() if r is None)
        if unknown:
            raise ConfigError(
                f"resources.gpus_per_trial is auto, but the launcher's node type(s) {', '.join(unknown)} do not "
                "declare their resources; set resources.gpus_per_trial to a number (e.g. 1, 0.5 or 0)"
            )
        return 0.0
    return 1.0 if any(r.get("GPU", 0) > 0 for r in live.values()) else 0.0


def group_demand(bundles: Sequence[Resources]) -> dict[str, float]:
    """The summed demand of a placement group's ``bundles`` per resource (zero amounts dropped)."""
    total: dict[str, float] = {}
    for bundle in bundles:
        for k, v in bundle.items():
            if v:
                total[k] = total.get(k, 0.0) + float(v)
    return total


def fits(bundles: Sequence[Resources], capacity: Resources) -> bool:
    """Whether all ``bundles`` fit one node of ``capacity``: Σ bundles[r] ≤ capacity[r] for every resource r."""
    return all(v <= capacity.get(k, 0.0) + EPS for k, v in group_demand(bundles).items())


def check_placeable(
    bundles: Sequence[Resources],
    node_types: Mapping[str, Resources | None] | None,
    live: Mapping[str, Resources],
) -> str | None:
    """The name of a node type or live node that the trial's placement group fits (``None`` when only node types
    of unknown resources remain, which cannot be checked: a warning is logged).

    Raises:
        ConfigError: the group fits no live node and no node type the launcher can start.
    """
    candidates: dict[str, Resources] = {f"node type {k}": v for k, v in (node_types or {}).items() if v is not None}
    candidates.update({f"node {k}": v for k, v in live.items()})
    for name, capacity in candidates.items():
        if fits(bundles, capacity):
            return name
    unknown = sorted(k for k, v in (node_types or {}).items() if v is None)
    demand = group_demand(bundles)
    if unknown:
        log.warning(
            "the trial needs %s on one node: no live node has it, node type(s) %s do not declare resources",
            demand,
            ", ".join(unknown),
        )
        return None
    have = "; ".join(f"{k}: {_short(v)}" for k, v in candidates.items()) or "no nodes"
    raise ConfigError(
        f"a trial needs {_short(demand)} on one node ({len(bundles)} bundles: resources.cpus_per_trial, "
        f"gpus_per_trial, bootstrap_workers × cpus_per_bootstrap_worker), but no node can provide it ({have}); "
        "lower them or add a larger node type"
    )


def _short(resources: Resources) -> str:
    keep = ("CPU", "GPU")
    return "{" + ", ".join(f"{k}: {resources[k]:g}" for k in keep if k in resources) + "}"


def cluster_view() -> tuple[dict[str, dict[str, float] | None] | None, dict[str, dict[str, float]], str | None]:
    """(launcher node types or ``None``, live nodes, the launcher's head node type) of the connected cluster."""
    path = launcher_config_path()
    head = None
    types = None
    if path is not None:
        config = yaml.safe_load(path.read_text()) or {}
        types = launcher_node_types(config)
        head = config.get("head_node_type")
    return types, live_nodes(), head


def gpus_for(value: float | str) -> float:
    """:func:`resolve_gpus_per_trial` against the connected cluster (Ray must be initialised)."""
    types, live, head = cluster_view()
    return resolve_gpus_per_trial(value, types, live, head)


def ensure_placeable(bundles: Sequence[Resources]) -> str | None:
    """:func:`check_placeable` against the connected cluster; nothing to check before Ray is initialised."""
    import ray

    if not ray.is_initialized():
        return None
    types, live, _ = cluster_view()
    return check_placeable(bundles, types, live)
