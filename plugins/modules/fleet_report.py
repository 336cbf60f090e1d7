#!/usr/bin/python
# Copyright (c) fleetsafe contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# ruff: noqa: EXE001 - modules carry the interpreter shebang; this one only documents an action plugin

from __future__ import annotations

DOCUMENTATION = r"""
---
module: fleet_report
short_description: Write the daily fleet backup report (HTML and JSON) from the central audit store
version_added: 0.1.0
description:
  - Builds the fleet report from the central store written by M(fleetsafe.backup.audit_collect) only;
    it reads nothing from the managed hosts (MON-DAILY, CONSOLE).
  - One row per host in O(hosts), also for hosts the store knows nothing about, which are shown as
    C(no data) and counted red.
  - Per host it shows the last full backup and its age against the policy (FREQ-FULL), the last
    incremental against the expected hourly run (FREQ-INCR), bytes added and duration of the last
    snapshot (LOC-ONSITE), the last verify and read-data verify (VER-CHECKSUM, ENC-TEST), the audit
    chain status (AUD-LOG), failed, partial and denied events in the window (AUD-LOG, AUD-MON,
    MON-DAILY, MON-ESCALATE) and when the store last heard from the host; then an overall status
    green, amber or red with the reasons, each citing its control IDs.
  - Writes C(<dest>/<UTC timestamp>/index.html) (self-contained HTML, inline CSS and SVG charts, no
    external URLs) and C(fleet.json), and points C(<dest>/latest) at the new directory (a relative
    symlink, or a copy where symlinks are impossible).
  - When nothing a reader would see has changed since the report in C(<dest>/latest) (same statuses,
    snapshots, chain heads and policy), no new report is written and the task is not changed, so a
    second run of the playbook is idempotent; O(force) writes one anyway.
  - The age rules and colours are documented in C(docs/report.md) in the collection.
  - This module runs on the controller only (an action plugin); run it once per play with
    C(run_once=true) and C(delegate_to=localhost).
author:
  - fleetsafe engineers
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  check_mode:
    support: full
    details: In check mode the report is built and summarised but no file is written.
  diff_mode:
    support: none
  platform:
    platforms: posix
    details: Runs on the controller.
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
options:
  store:
    description:
      - The SQLite store written by M(fleetsafe.backup.audit_collect). A missing store is not an error
        (every host is reported as C(no data), with a warning).
      - A relative path is resolved like the store path of M(fleetsafe.backup.audit_collect), see O(relative_to).
    type: path
    required: true
  dest:
    description:
      - Directory that receives one sub-directory per report and the C(latest) link. Relative paths are
        resolved like O(store).
    type: path
    required: true
  hosts:
    description:
      - The hosts to report on, in this order. Pass C(ansible_play_hosts_all) (which keeps failed and
        unreachable hosts) or C(groups['all']); a host missing from the store is shown as C(no data).
    type: list
    elements: str
    required: true
  policy:
    description:
      - Overrides of the policy profile, merged over the defaults. Keys not listed here are ignored, so
        the site-wide C(fleetsafe_policy) can be passed as it is.
      - C(full_max_age_days) (7), C(full_grace_hours) (12) for FREQ-FULL.
      - C(incr_window_start) (8), C(incr_window_end) (20), C(incr_interval_minutes) (60),
        C(incr_days) (all weekdays, C(mon)..C(sun)), C(incr_slack_minutes) (30) for FREQ-INCR.
      - C(verify_max_age_hours) (26; C(verify_max_age_days=N) means N*24+2), C(read_data_max_age_days) (7),
        C(verify_grace_hours) (12) for VER-CHECKSUM and ENC-TEST.
      - C(failure_window_hours) (24), C(escalate_after_hours) (24), C(collect_max_age_hours) (26) for
        MON-DAILY and MON-ESCALATE.
      - C(timezone) (the controller's local zone), the IANA zone of the incremental window;
        C(history_days) (14), the days in the chart.
    type: dict
    default: {}
  relative_to:
    description:
      - Base directory for a relative O(store) or O(dest). V(inventory) is the directory of the first
        inventory source (falling back to the playbook directory), V(playbook) the playbook directory,
        V(cwd) the directory C(ansible-playbook) was started in.
    type: str
    choices: [inventory, playbook, cwd]
    default: inventory
  force:
    description:
      - Write a new report even when nothing changed since the latest one.
    type: bool
    default: false
  fail_on_red:
    description:
      - Fail the task (after writing the report) when any host is red, so that an AWX job turns red and
        its notification templates fire.
    type: bool
    default: false
  now:
    description:
      - The report's time as an ISO-8601 timestamp instead of the current time, for reproducible
        reports and tests. Ages are computed against it, in UTC.
    type: str
  run_failures:
    description:
      - Hosts that failed this run on the controller's side, mapped to the reason (unreachable,
        a backup task failed). They are recorded in the store first (MON-ALERT) and the host's row
        is red with that reason until a later successful collection from the host.
      - Hosts not in O(hosts) are ignored. Nothing is recorded in check mode.
    type: dict
    default: {}
notes:
  - Under AWX/AAP the job variables C(awx_job_id), C(awx_job_launch_type), C(awx_job_template_name),
    C(awx_schedule_name) and C(awx_user_name) are recorded in C(fleet.json) (C(run)).
  - To hand the summary to a workflow, register the result and pass RV(summary) to
    M(ansible.builtin.set_stats) under a prefixed key such as C(fleetsafe_report_summary).
seealso:
  - module: fleetsafe.backup.audit_collect
"""

EXAMPLES = r"""
- name: Write the fleet report (MON-DAILY, CONSOLE)
  fleetsafe.backup.fleet_report:
    store: "{{ fleetsafe_store_path }}"
    dest: "{{ fleetsafe_report_dir }}"
    hosts: "{{ ansible_play_hosts_all }}"
    policy: "{{ fleetsafe_policy | default({}) }}"
  run_once: true
  delegate_to: localhost
  register: fleetsafe_report

- name: Publish the summary as a job artifact (AWX)
  ansible.builtin.set_stats:
    data:
      fleetsafe_report_summary: "{{ fleetsafe_report.summary }}"
    per_host: false
  run_once: true

- name: Stricter full backups, window in the site's zone, fail the job on red
  fleetsafe.backup.fleet_report:
    store: state/fleetsafe.db
    dest: reports
    hosts: "{{ groups['all'] }}"
    policy:
      full_max_age_days: 3
      timezone: Europe/Berlin
    fail_on_red: true
  run_once: true
  delegate_to: localhost
"""

RETURN = r"""
summary:
  description: Host counts by overall status.
  returned: always
  type: dict
  sample: {"hosts": 12, "green": 10, "amber": 1, "red": 1}
red_hosts:
  description: Names of the red hosts.
  returned: always
  type: list
  elements: str
  sample: ["db2"]
amber_hosts:
  description: Names of the amber hosts.
  returned: always
  type: list
  elements: str
  sample: ["ws-042"]
report_dir:
  description: The directory written by this task; null when nothing changed or in check mode.
  returned: always
  type: str
  sample: /srv/fleetsafe/reports/20261203T180000Z
latest:
  description: Path of the latest report's HTML page.
  returned: always
  type: str
  sample: /srv/fleetsafe/reports/latest/index.html
fingerprint:
  description: Hash of what the report shows (statuses, snapshots, chain heads, policy); equal fingerprints mean nothing changed.
  returned: always
  type: str
  sample: 5b0f0c1e9d4a7c3e2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c
generated_at:
  description: The report's time (UTC).
  returned: always
  type: str
  sample: "2026-12-03T18:00:00.000000Z"
"""
