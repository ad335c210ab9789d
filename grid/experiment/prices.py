"""The built-in price table: US dollars per GPU-hour, by accelerator type (plain data).

Indicative Spot prices of the GPU alone, Google Cloud us-west1, as assumed on 2026-12-02 and
not fetched live: check https://cloud.google.com/spot-vms/pricing (or your provider's page)
and replace them with your own table, ``depth-grid run --prices my_prices.json`` (or
``.toml``, the same flat shape: ``{"T4": 0.14, "default": 0.14}``). The VM a GPU attaches to
costs extra (about $0.05/h for an n1-standard-4 with its disk; docs/cluster.md).

Keys are matched as whole words against the device name a trial records (``torch.cuda
.get_device_name``: "Tesla T4", "Tesla P100-PCIE-16GB", "NVIDIA A100-SXM4-40GB" -> T4, P100,
A100). ``default`` prices a trial that held a GPU but saw no CUDA device (a logical GPU, as in
the tests, or a node whose driver failed): it is the cluster's first GPU worker type, T4 Spot
(cluster.yaml), since that is what such a reservation occupies. A GPU without an entry is
priced as unknown, never as free.
"""

DATE = "2026-12-02"
DEFAULT = "default"

PRICES: dict[str, float] = {
    "T4": 0.14,     # GCP Spot ~$0.11-0.15/h; AWS g4dn.xlarge Spot is ~$0.16-0.25/h with its VM
    "P100": 0.43,
    "V100": 0.74,
    "L4": 0.22,
    "A100": 1.15,   # 40 GB
    "H100": 2.25,
    DEFAULT: 0.14,  # = T4
}
