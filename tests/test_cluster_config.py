"""cluster.yaml and cluster-aws.yaml: Ray 2.60's own validator (offline), then what its schema
cannot see; and every command of the cluster docs (docs/cluster.md, and the README's short cluster
section, whose `grid.run` command must be docs/cluster.md's) names options that exist.

Each ``*_problems`` check returns a list of problems; the tests assert it is empty for the real
files and not empty for deliberately broken copies, so the checks can fail.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import re
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
GCP, AWS, README = ROOT / "cluster.yaml", ROOT / "cluster-aws.yaml", ROOT / "README.md"
CLUSTER_DOC = ROOT / "docs" / "cluster.md"
CLUSTER_HEADING = "## Running the grid on a cloud GPU cluster"  # the README's section


def cluster_docs() -> str:
    """The whole cluster page, docs/cluster.md."""
    return CLUSTER_DOC.read_text()


def readme_cluster_section() -> str:
    """The README's cluster section (from its heading to the next top-level section); the line
    tests/test_cluster_autoscaling.py runs is read from here."""
    text = README.read_text()
    start = text.index(CLUSTER_HEADING)
    end = text.find("\n## ", start + len(CLUSTER_HEADING))
    return text[start:] if end == -1 else text[start:end]
# Ports of a Ray node (GCS, dashboard, client, object/node manager, agent, metrics) and TensorBoard.
RAY_PORTS = (6379, 8265, 10001, 8076, 8077, 52365, 8080, 6006)
GCP_GPUS = {"nvidia-tesla-t4": "T4", "nvidia-tesla-p100": "P100"}  # API name -> Ray accelerator_type
AWS_GPUS = {"g4dn.xlarge": ("T4", 1), "g4dn.12xlarge": ("T4", 4)}
CC60 = {"P100"}  # compute capability 6.0: not in the CUDA 13 builds of torch
PROJECT_INSTALL = re.compile(r"pip install\b.*-e ~/depth-grid\b")


def pins() -> dict[str, str]:
    """``name -> version`` of the ``==`` pins in pyproject.toml (the versions the cluster must use)."""
    text = (ROOT / "pyproject.toml").read_text()
    return {m[1].lower(): m[2] for m in re.finditer(r'"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^";\s]+)"', text)}


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def prepared(cfg: dict) -> dict:
    """What `ray up` works from: Ray's defaults merged in, then Ray's schema and checks."""
    out = prepare_config(copy.deepcopy(cfg))
    validate_config(out)
    return out


def setup_of(prep: dict, node_type: str) -> list[str]:
    """The setup commands Ray runs on a node of this type (a type's own list replaces the rest)."""
    if node_type == prep["head_node_type"]:
        return prep["head_setup_commands"]
    return prep["available_node_types"][node_type].get("worker_setup_commands", prep["worker_setup_commands"])


def gpu_types(prep: dict) -> dict[str, str]:
    """``node type -> Ray accelerator_type`` for the GPU node types."""
    out = {}
    for name, nt in prep["available_node_types"].items():
        for acc in nt["node_config"].get("guestAccelerators", []):
            out[name] = GCP_GPUS.get(acc["acceleratorType"], acc["acceleratorType"])
        if nt["node_config"].get("InstanceType") in AWS_GPUS:
            out[name] = AWS_GPUS[nt["node_config"]["InstanceType"]][0]
    return out


def common_problems(cfg: dict) -> list[str]:
    """Versions, project install, token authentication, loopback dashboard: both clouds."""
    prep, pin, out = prepared(cfg), pins(), []
    for key in ("head_image", "worker_image"):
        if not prep["docker"].get(key, "").startswith(f"rayproject/ray:{pin['ray']}-"):
            out.append(f"docker.{key} is not pinned to Ray {pin['ray']}")
    if not prep.get("idle_timeout_minutes", 0) > 0:
        out.append("no idle timeout: idle GPU nodes would keep running")
    if prep["file_mounts"].get("~/depth-grid") != ".":
        out.append("file_mounts does not copy this checkout to ~/depth-grid")
    if "RAY_AUTH_MODE=token" not in " ".join(prep["docker"].get("run_options", [])):
        out.append("token authentication is off (RAY_AUTH_MODE=token not in docker.run_options)")
    if "~/.ray/auth_token" not in prep["file_mounts"]:
        out.append("the auth token is not copied to the nodes (file_mounts ~/.ray/auth_token)")
    for cmd in prep["head_start_ray_commands"]:
        if re.search(r"--dashboard-host[= ]0\.0\.0\.0", cmd):
            out.append("the dashboard listens on every interface (--dashboard-host=0.0.0.0)")
    for name in prep["available_node_types"]:
        setup = " ; ".join(setup_of(prep, name))
        if not re.search(rf"pip install\b.*\bray\[[^\]]*\]=={re.escape(pin['ray'])}\b", setup):
            out.append(f"{name}: setup does not pin ray=={pin['ray']}")
        if not PROJECT_INSTALL.search(setup):
            out.append(f"{name}: setup does not `pip install -e ~/depth-grid`")
        for found in re.findall(r"\btorch==(\S+)", setup):
            if found != pin["torch"]:
                out.append(f"{name}: installs torch=={found}, pyproject pins {pin['torch']}")
    out += multi_gpu_problems(prep)
    for name, acc in gpu_types(prep).items():
        cmds = setup_of(prep, name)
        project = next((i for i, c in enumerate(cmds) if PROJECT_INSTALL.search(c)), len(cmds))
        cu126 = [i for i, c in enumerate(cmds)
                 if f"torch=={pin['torch']}" in c and "download.pytorch.org/whl/cu126" in c]
        if acc in CC60 and not (cu126 and cu126[0] < project and "if " not in cmds[cu126[0]]):
            out.append(f"{name}: {acc} must install the cu126 build of torch before the project")
    return out


def multi_gpu_problems(prep: dict) -> list[str]:
    """A node type with several GPUs ships switched off (``max_workers: 0``), so the autoscaler
    never adds it for 1-GPU trials; there must be one (docs/cluster.md, "Multi-GPU nodes")."""
    multi = {name: nt for name, nt in prep["available_node_types"].items()
             if name != prep["head_node_type"] and nt["resources"].get("GPU", 0) > 1}
    out = [f"{name}: a {nt['resources']['GPU']:g}-GPU type with max_workers {nt.get('max_workers')} would be "
           "added for 1-GPU trials; ship it at max_workers 0" for name, nt in multi.items() if nt.get("max_workers") != 0]
    out += [f"{name}: min_workers {nt.get('min_workers')}, should be 0" for name, nt in multi.items()
            if nt.get("min_workers", 0) != 0]
    if not multi:
        out.append("no multi-GPU node type (--gpus-per-trial 2..4 has nothing to enable)")
    return out


def gcp_problems(cfg: dict) -> list[str]:
    prep, out = prepared(cfg), []
    project = prep["provider"]["project_id"]
    region = prep["provider"]["region"]
    seen = set()
    for name, nt in prep["available_node_types"].items():
        nc, res = nt["node_config"], nt["resources"]
        sched = nc.get("scheduling", {})
        if not isinstance(sched, dict):
            out.append(f"{name}: scheduling must be a mapping, got {type(sched).__name__}")
            sched = {}
        for ni in nc.get("networkInterfaces", []):
            if not ni.get("subnetwork", "").startswith(f"regions/{region}/"):
                out.append(f"{name}: subnetwork {ni.get('subnetwork')!r} is not in {region}")
        accs = nc.get("guestAccelerators", [])
        count = sum(a["acceleratorCount"] for a in accs)
        if res.get("GPU", 0) != count:
            out.append(f"{name}: declares GPU {res.get('GPU', 0)} but attaches {count}")
        if not accs:
            continue
        seen.update((a["acceleratorType"], a["acceleratorCount"]) for a in accs)
        if not nc["machineType"].startswith("n1-"):
            out.append(f"{name}: T4/P100 attach to N1 machines only, got {nc['machineType']}")
        if sched.get("onHostMaintenance") != "TERMINATE":
            out.append(f"{name}: GPU nodes need scheduling.onHostMaintenance TERMINATE")
        if sched.get("provisioningModel") != "SPOT" and sched.get("preemptible") is not True:
            out.append(f"{name}: not Spot/preemptible")
        if sched.get("provisioningModel") == "SPOT" and sched.get("automaticRestart") is not False:
            out.append(f"{name}: Spot VMs need automaticRestart false")
        for a in accs:
            if res.get(f"accelerator_type:{GCP_GPUS.get(a['acceleratorType'])}") != 1:
                out.append(f"{name}: resources lack accelerator_type for {a['acceleratorType']}")
        items = {i["key"]: i["value"] for i in nc.get("metadata", {}).get("items", [])}
        if items.get("install-nvidia-driver") != "True":
            out.append(f"{name}: no NVIDIA driver install (metadata install-nvidia-driver)")
        emails = [sa["email"] for sa in nc.get("serviceAccounts", [])]
        if emails != [f"ray-autoscaler-sa-v1@{project}.iam.gserviceaccount.com"]:
            out.append(f"{name}: workers need Ray's service account to write gs://, got {emails}")
    if seen != {("nvidia-tesla-t4", 1), ("nvidia-tesla-p100", 1), ("nvidia-tesla-t4", 4)}:
        out.append(f"GPU node types should be one T4, one P100 and four T4s, got {sorted(seen)}")
    return out


def _public(cidr: str) -> bool:
    return not ipaddress.ip_network(cidr, strict=False).is_private


def aws_problems(cfg: dict) -> list[str]:
    prep, out = prepared(cfg), []
    for rule in prep["provider"].get("security_group", {}).get("IpPermissions", []):
        cidrs = [r["CidrIp"] for r in rule.get("IpRanges", [])] + [r["CidrIpv6"] for r in rule.get("Ipv6Ranges", [])]
        lo, hi = rule.get("FromPort", -1), rule.get("ToPort", -1)
        if any(_public(c) for c in cidrs) and (rule.get("IpProtocol"), lo, hi) != ("tcp", 22, 22):
            opened = [p for p in RAY_PORTS if lo == -1 or lo <= p <= hi]
            out.append(f"security group opens {rule.get('IpProtocol')} {lo}-{hi} to the internet "
                       f"(Ray/TensorBoard ports {opened})")
    for name, nt in prep["available_node_types"].items():
        nc = nt["node_config"]
        if "SecurityGroupIds" in nc:
            out.append(f"{name}: own SecurityGroupIds bypass the SSH-only group")
        acc, count = AWS_GPUS.get(nc["InstanceType"], (None, 0))
        if nt["resources"].get("GPU", 0) != count:
            out.append(f"{name}: declares GPU {nt['resources'].get('GPU', 0)}, {nc['InstanceType']} has {count}")
        if acc and nt["resources"].get(f"accelerator_type:{acc}") != 1:
            out.append(f"{name}: resources lack accelerator_type:{acc}")
        if acc and nc.get("InstanceMarketOptions", {}).get("MarketType") != "spot":
            out.append(f"{name}: not Spot")
    if not gpu_types(prep):
        out.append("no g4dn (T4) worker type")
    return out


# ---- the cluster docs: firewall rules and command lines ------------------------------------------------

def doc_commands(text: str) -> list[str]:
    """Command lines of the fenced bash, sh and unlabelled blocks, and the inline code spans of
    the prose. Fences are paired line by line, so a block in another language (```python) is
    skipped whole instead of shifting which fences pair up."""
    lines, prose, block, lang = [], [], None, ""
    for ln in text.splitlines():
        fence = re.fullmatch(r"```(\w*)", ln.strip())
        if block is None and fence:
            block, lang = [], fence[1]
        elif block is not None and ln.strip() == "```":
            if lang in ("", "bash", "sh"):
                joined = "\n".join(block).replace("\\\n", " ")
                lines += [c.strip() for c in joined.splitlines() if c.strip() and not c.strip().startswith("#")]
            block = None
        elif block is not None:
            block.append(ln)
        else:
            prose.append(ln)
    return lines + re.findall(r"(?<!`)`([^`\n]+)`(?!`)", "\n".join(prose))


def segments(line: str) -> list[list[str]]:
    """Simple commands of a shell line (split at && ; |), leading VAR=value dropped."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    out: list[list[str]] = [[]]
    for tok in lex:
        if tok in ("&&", ";", "|", "||", "&"):
            out.append([])
        else:
            out[-1].append(tok)
    cleaned = []
    for seg in out:
        while seg and re.fullmatch(r"[A-Z_]+=\S*", seg[0]):
            seg = seg[1:]
        if seg:
            cleaned.append(seg)
    return cleaned


def firewall_problems(text: str) -> list[str]:
    """Rules open to a public range may allow tcp:22 only (gcloud's default range is 0.0.0.0/0)."""
    out = []
    for line in doc_commands(text):
        for seg in segments(line):
            if seg[:4] != ["gcloud", "compute", "firewall-rules", "create"]:
                continue
            opts = dict(t[2:].split("=", 1) for t in seg if t.startswith("--") and "=" in t)
            ranges = opts.get("source-ranges", "0.0.0.0/0").split(",")
            allow = opts.get("allow", "").split(",")
            if any(_public(r) for r in ranges) and allow != ["tcp:22"]:
                out.append(f"firewall rule {seg[4]} opens {allow} to {ranges}")
    return out


def option_problems(text: str, grid_parse: Callable[[list[str]], object] | None = None) -> list[str]:
    """`ray ...` options checked against Ray's own CLI; `python -m grid.run ...` parsed by grid.run."""
    import click
    from ray.scripts.scripts import cli

    out: list[str] = []

    def check(line: str, depth: int = 0) -> None:
        try:
            segs = segments(line)
        except ValueError as e:
            if depth == 0:
                out.append(f"{line!r}: {e}")
            return
        for seg in segs:
            for tok in seg:
                if " " in tok and depth < 3:  # a quoted command (ray exec "...", bash -c "...")
                    check(tok, depth + 1)
            if seg[0] == "ray":
                cmd, i = cli, 1
                while isinstance(cmd, click.Group):
                    if i >= len(seg) or seg[i] not in cmd.commands:
                        out.append(f"{' '.join(seg)!r}: no such ray command")
                        break
                    cmd, i = cmd.commands[seg[i]], i + 1
                else:
                    known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
                    rest = seg[i:seg.index("--")] if "--" in seg else seg[i:]
                    for tok in rest:
                        if tok.startswith("-") and tok.split("=")[0] not in known:
                            out.append(f"{' '.join(seg[:i])}: no option {tok.split('=')[0]}")
            elif seg[:3] == ["python", "-m", "grid.run"] and grid_parse is not None:
                try:
                    grid_parse(seg[3:])
                except SystemExit:
                    out.append(f"{' '.join(seg)!r}: rejected by grid.run's parser")

    for line in doc_commands(text):
        check(line)
    return out


# ---- tests ---------------------------------------------------------------------------------

@pytest.mark.parametrize("path, cloud_problems", [(GCP, gcp_problems), (AWS, aws_problems)], ids=["gcp", "aws"])
def test_config_passes_ray_validator_and_checks(path: Path, cloud_problems) -> None:
    cfg = load(path)
    assert prepared(cfg)["head_node_type"] == "head"
    assert common_problems(cfg) == []
    assert cloud_problems(cfg) == []


@pytest.mark.parametrize("path", [GCP, AWS], ids=["gcp", "aws"])
@pytest.mark.parametrize("breaks", [
    lambda c: c["available_node_types"][c["head_node_type"]]["resources"].update(GPU=0.5),  # not an integer
    lambda c: c.update(idle_timeout_minute=5),  # misspelt key
    lambda c: c.update(head_node_type="nope"),
], ids=["fractional-gpu", "unknown-key", "unknown-head-type"])
def test_ray_validator_rejects_broken_copy(path: Path, breaks) -> None:
    cfg = load(path)
    breaks(cfg)
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        prepared(cfg)


def _t4(c):
    return c["available_node_types"]["gpu_t4_spot"]


def _p100(c):
    return c["available_node_types"]["gpu_p100_spot"]


def _t4x4(c):
    return c["available_node_types"]["gpu_4t4_spot"]


@pytest.mark.parametrize("breaks, check, expected", [
    (lambda c: _t4(c)["node_config"].update(scheduling=[{"provisioningModel": "SPOT"}]), gcp_problems, "mapping"),
    (lambda c: _p100(c)["node_config"]["scheduling"].pop("onHostMaintenance"), gcp_problems, "TERMINATE"),
    (lambda c: _t4(c)["node_config"]["guestAccelerators"][0].update(acceleratorCount=2), gcp_problems, "attaches 2"),
    (lambda c: _p100(c)["node_config"]["guestAccelerators"][0].update(acceleratorType="nvidia-tesla-v100"),
     gcp_problems, "P100"),
    (lambda c: _t4(c)["resources"].pop("GPU"), gcp_problems, "declares GPU 0"),
    (lambda c: _t4(c)["node_config"].update(machineType="e2-standard-4"), gcp_problems, "N1"),
    (lambda c: _t4(c)["node_config"].pop("serviceAccounts"), gcp_problems, "service account"),
    (lambda c: c["docker"].update(worker_image="rayproject/ray:latest-gpu"), common_problems, "worker_image"),
    (lambda c: c.update(setup_commands=["pip install ray[default]==2.9.0"]), common_problems, "head: setup"),
    (lambda c: _p100(c).pop("worker_setup_commands"), common_problems, "cu126"),
    (lambda c: _p100(c)["worker_setup_commands"].reverse(), common_problems, "cu126"),
    (lambda c: c["docker"].update(run_options=[]), common_problems, "token"),
    (lambda c: c.update(head_start_ray_commands=["ray start --head --dashboard-host=0.0.0.0"]),
     common_problems, "every interface"),
    (lambda c: _t4x4(c).update(max_workers=2), common_problems, "ship it at max_workers 0"),
    (lambda c: _t4x4(c).update(min_workers=1), common_problems, "min_workers 1"),
    (lambda c: c["available_node_types"].pop("gpu_4t4_spot"), common_problems, "no multi-GPU node type"),
    (lambda c: _t4x4(c)["node_config"]["guestAccelerators"][0].update(acceleratorCount=2), gcp_problems,
     "attaches 2"),
], ids=["scheduling-list", "no-terminate", "two-gpus", "v100", "no-gpu-resource", "e2-machine",
        "no-worker-sa", "latest-image", "old-ray", "p100-no-cu126", "p100-cu126-after-project",
        "no-token", "dashboard-open", "4t4-started", "4t4-min-workers", "no-4t4", "4t4-two-gpus"])
def test_gcp_checks_catch_broken_copies(breaks, check, expected: str) -> None:
    cfg = load(GCP)
    breaks(cfg)
    problems = check(cfg)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("breaks, expected", [
    (lambda c: c["provider"]["security_group"].update(IpPermissions=[
        {"FromPort": 8265, "ToPort": 8265, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]), "8265"),
    (lambda c: c["provider"]["security_group"].update(IpPermissions=[
        {"FromPort": -1, "ToPort": -1, "IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}]), "6379"),
    (lambda c: _t4(c)["node_config"].update(SecurityGroupIds=["sg-0123"]), "bypass"),
    (lambda c: _t4(c)["node_config"].pop("InstanceMarketOptions"), "Spot"),
    (lambda c: _t4x4(c)["resources"].update(GPU=2), "declares GPU 2, g4dn.12xlarge has 4"),
    (lambda c: _t4x4(c)["node_config"].pop("InstanceMarketOptions"), "gpu_4t4_spot: not Spot"),
], ids=["dashboard-open", "all-open-ipv6", "own-group", "on-demand", "4t4-gpu-count", "4t4-on-demand"])
def test_aws_checks_catch_broken_copies(breaks, expected: str) -> None:
    cfg = load(AWS)
    breaks(cfg)
    problems = aws_problems(cfg)
    assert any(expected in p for p in problems), problems


def test_aws_private_rule_is_allowed() -> None:
    cfg = load(AWS)
    cfg["provider"]["security_group"]["IpPermissions"] = [
        {"FromPort": 6379, "ToPort": 6379, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "10.0.0.0/16"}]}]
    assert aws_problems(cfg) == []


@pytest.mark.parametrize("path", [GCP, AWS], ids=["gcp", "aws"])
@pytest.mark.parametrize("driver, cu126", [("570.86.15", True), ("580.65.06", False)])
def test_t4_setup_picks_torch_build_by_driver(path: Path, driver: str, cu126: bool, tmp_path: Path) -> None:
    """Run the config's own command with a fake nvidia-smi and pip on PATH."""
    cmd = next(c for c in prepared(load(path))["worker_setup_commands"] if "driver_version" in c)
    bin_dir, log = tmp_path / "bin", tmp_path / "pip.log"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(f"#!/bin/sh\necho {driver}\n")
    (bin_dir / "pip").write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"}
    subprocess.run(["bash", "-c", cmd], env=env, check=True, timeout=30)
    installed = log.read_text() if log.exists() else ""
    assert (f"torch=={pins()['torch']}" in installed and "/whl/cu126" in installed) == cu126, installed


def test_docs_firewall_opens_only_ssh() -> None:
    text = cluster_docs()
    assert "gcloud compute firewall-rules create" in text
    assert firewall_problems(text) == []


@pytest.mark.parametrize("extra", [
    "gcloud compute firewall-rules create open-dash --network=depth-grid --allow=tcp:8265",  # default 0.0.0.0/0
    "gcloud compute firewall-rules create open-all --network=depth-grid --allow=tcp:22,tcp:6379 "
    "--source-ranges=0.0.0.0/0",
])
def test_docs_firewall_check_catches_open_ports(extra: str) -> None:
    assert firewall_problems(cluster_docs() + f"\n```bash\n{extra}\n```\n")


def test_docs_subnet_is_the_one_in_cluster_yaml() -> None:
    cfg = load(GCP)
    subnet = cfg["available_node_types"]["head"]["node_config"]["networkInterfaces"][0]["subnetwork"]
    _, region, _, name = subnet.split("/")
    assert re.search(rf"subnets create {name} .*--region={region}\b", cluster_docs())


def test_docs_ray_commands_name_existing_options() -> None:
    text = cluster_docs()
    for cmd in ("ray up", "ray exec", "ray attach", "ray dashboard", "ray rsync-down", "ray down",
                "ray job submit"):
        assert cmd in text, cmd
    assert option_problems(text) == []


@pytest.mark.parametrize("bad, expected", [
    ("ray up cluster.yaml --yes-please", "no option --yes-please"),
    ('ray exec cluster.yaml --port 6006 "ls"', "no option --port"),
    ('ray exec cluster.yaml "ray status --watch"', "no option --watch"),
    ("ray job sumbit --address http://127.0.0.1:8265 -- ls", "no such ray command"),
])
def test_docs_option_check_catches_bad_commands(bad: str, expected: str) -> None:
    problems = option_problems(f"```bash\n{bad}\n```\n")
    assert any(expected in p for p in problems), problems


def test_docs_grid_run_commands_parse() -> None:
    import grid.cli.run as grid_run  # project code: failing to import is a failure, never a skip
    text = cluster_docs()
    assert "python -m grid.run" in text
    assert option_problems(text, grid_run.parse_args) == []
    bad = '```bash\nray exec cluster.yaml "cd ~/depth-grid && python -m grid.run --space smoke --nodes 2"\n```\n'
    assert option_problems(bad, grid_run.parse_args)


def tmux_grid_command(text: str) -> list[str]:
    """The `python -m grid.run ...` of the one `ray exec cluster.yaml --tmux "..."` line in ``text``."""
    (line,) = [ln for ln in text.splitlines() if ln.startswith('ray exec cluster.yaml --tmux "')]
    inner = shlex.split(line)[-1]  # cd ~/depth-grid && python -m grid.run ...
    (cmd,) = [part.strip() for part in inner.split("&&") if part.strip().startswith("python -m grid.run")]
    return shlex.split(cmd)


def test_readme_cluster_section_runs_the_same_grid_as_docs_cluster() -> None:
    grid_run = pytest.importorskip("grid.cli.run")
    short = readme_cluster_section()
    assert tmux_grid_command(short) == tmux_grid_command(cluster_docs())
    assert "docs/cluster.md" in short
    for cmd in ("ray up cluster.yaml", "ray exec cluster.yaml --tmux", "ray down cluster.yaml"):
        assert cmd in short, cmd
    assert option_problems(short, grid_run.parse_args) == []


def test_grid_command_check_catches_a_differing_copy() -> None:
    other = cluster_docs().replace("--space all_models --address auto", "--space smoke --address auto", 1)
    assert tmux_grid_command(other) != tmux_grid_command(readme_cluster_section())

