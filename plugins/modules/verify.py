#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) fleetsafe contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: verify
short_description: Check the integrity of a host's fleetsafe repository
version_added: 1.0.0
description:
  - Runs C(fleetsafe verify --json) on the managed host (VER-CHECKSUM, ENC-TEST).
  - The structural check confirms that every pack's name is the SHA-256 of its
    bytes, that every index entry points into an existing pack and that every
    snapshot's trees and chunks are indexed.
  - With O(read_data_percent) above 0 the agent also decrypts and authenticates
    that share of the blobs (AES-256-GCM), which proves the encryption works (ENC-TEST).
  - The task fails when the repository is damaged, listing the problems.
author:
  - fleetsafe engineers (@fleetsafe)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
  - fleetsafe.backup.agent
attributes:
  check_mode:
    support: full
    details: Verification changes no backup data, so it also runs in check mode (it appends one audit event).
  diff_mode:
    support: N/A
    details: The module changes nothing.
  platform:
    platforms: posix
  action_group:
    support: full
    membership:
      - fleetsafe.backup.fleetsafe
options:
  read_data_percent:
    description:
      - Share of blobs to decrypt and authenticate, from C(0) (structural check only) to C(100) (all data).
    type: float
    default: 0
"""

EXAMPLES = r"""
- name: Daily structural check (VER-CHECKSUM)
  fleetsafe.backup.verify:

- name: Weekly read-data sample of 5 % (ENC-TEST)
  fleetsafe.backup.verify:
    read_data_percent: 5
"""

RETURN = r"""
status:
  description: C(ok); a damaged repository fails the task with C(status=damaged).
  returned: always
  type: str
  sample: ok
packs_checked:
  description: Pack files checked.
  returned: always
  type: int
  sample: 12
blobs_checked:
  description: Blobs decrypted and authenticated.
  returned: always
  type: int
  sample: 340
bytes_read:
  description: Bytes read from the target.
  returned: always
  type: int
  sample: 73400320
problems:
  description: Damaged, missing or unauthenticated objects (at most 50), each with C(object) and C(problem).
  returned: always
  type: list
  elements: dict
  sample: []
read_data_percent:
  description: The read-data share that was requested.
  returned: success
  type: float
  sample: 5.0
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fleetsafe.backup.plugins.module_utils._agent import (
    Agent,
    AgentError,
    common_argument_spec,
    run_verify,
)


def main():
    argument_spec = common_argument_spec()
    argument_spec.update(read_data_percent=dict(type="float", default=0))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        result = run_verify(Agent.from_module(module), module.params["read_data_percent"])
    except AgentError as exc:
        module.fail_json(msg=exc.msg, **exc.result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
