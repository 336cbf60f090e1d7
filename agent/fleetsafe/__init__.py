"""fleetsafe: the host-side backup agent of the fleetsafe.backup Ansible collection."""

__version__ = "0.1.0"
