"""The Hugging Face weights a plan needs, checked on the driver before Ray starts.

A trial with ``pretrained=yes`` whose Hub weights cannot be had fails inside Ray, after its
retries, in many lines. The catalog knows each architecture's repo without importing the zoo,
and ``huggingface_hub`` answers from its cache whether the weights are there; only when they are
not is the Hub asked (a few hundred milliseconds, or an immediate refusal where there is no
network), so a run that would fail stops here in one line instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from trainables.weights import WeightsUnavailableError

PROBE_TIMEOUT_S = 5.0


def hub_needs(configs: Iterable[dict[str, Any]]) -> dict[str, tuple[str, str | None, list[str]]]:
    """``repo -> (file, revision, architectures)`` the configs with ``pretrained=yes`` download: under
    ``if_available`` a trial falls back to random weights, so nothing is needed."""
    from trainables.models.catalog import architectures

    known, needs = architectures(), {}
    for config in configs:
        info = known.get(str(config.get("arch")))
        if info is None or config.get("pretrained", "yes") != "yes":
            continue
        repo = info.hub_repo(config.get("model_kwargs") or {})
        if repo is not None:
            archs = needs.setdefault(repo, (info.hub_file, info.revision, []))[2]
            if config["arch"] not in archs:
                archs.append(config["arch"])
    return needs


def missing_from_cache(needs: dict[str, tuple[str, str | None, list[str]]]) -> dict[str, list[str]]:
    """The repos of ``needs`` whose file is not in the Hub cache (``HF_HOME``/``HF_HUB_CACHE``)."""
    from huggingface_hub import try_to_load_from_cache

    return {repo: archs for repo, (file, revision, archs) in needs.items()
            if not isinstance(try_to_load_from_cache(repo, file, revision=revision), str)}


def check_hub_weights(configs: Iterable[dict[str, Any]]) -> None:
    """Raise ``WeightsUnavailableError`` (one line) when a ``pretrained=yes`` trial's Hub weights
    are neither cached on this machine nor downloadable from it. For runs whose trials train
    here: a cluster's workers download into their own caches."""
    missing = missing_from_cache(hub_needs(configs))
    if not missing:
        return
    from huggingface_hub import HfApi, constants

    for repo, archs in missing.items():
        if constants.HF_HUB_OFFLINE:
            why = "HF_HUB_OFFLINE is set"
        else:
            try:
                HfApi().model_info(repo, timeout=PROBE_TIMEOUT_S)
                continue  # reachable: the trials download it into the cache
            except Exception as e:  # no network, no such repo, no access: the trial would fail alike
                why = f"the Hub cannot be reached ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
        raise WeightsUnavailableError(
            f"{', '.join(archs)} with pretrained=yes need{'s' if len(archs) == 1 else ''} {repo}, which is "
            f"not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and {why}: run `hf download {repo}` "
            "where there is network (HF_HOME moves the cache), or --set pretrained=if_available to "
            "train from random weights instead")
