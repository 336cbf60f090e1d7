# -*- coding: utf-8 -*-
# Copyright (c) fleetsafe contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options shared by every module that calls the fleetsafe agent."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Keep in step with common_argument_spec() in plugins/module_utils/_agent.py.
    DOCUMENTATION = r"""
options:
  agent_path:
    description:
      - Path of the C(fleetsafe) agent executable on the managed host.
      - The modules only call it; the C(fleetsafe.backup.agent) role installs it and links it here.
    type: path
    default: /usr/local/bin/fleetsafe
  config:
    description:
      - Agent configuration file on the managed host, as written by the C(fleetsafe.backup.agent) role.
    type: path
    default: /etc/fleetsafe/agent.yml
  target:
    description:
      - Name of the storage target to act on (a C(targets[].name) of the agent configuration).
      - When omitted the agent uses the primary target (LOC-ONSITE).
    type: str
requirements:
  - the fleetsafe agent on the managed host (role C(fleetsafe.backup.agent))
notes:
  - The module runs C(fleetsafe <command> --json) and returns its JSON document
    (schema_version 1, see the collection's docs/cli.md).
  - Runs started by a module are recorded in the host's audit log with C(actor.via=ansible) (AC-LOG).
"""
