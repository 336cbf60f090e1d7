# Private to this collection: no compatibility promise, do not import from other collections.
"""Render the fleet report (``fleet.json`` document) as one self-contained HTML page.

Contract: ``render_html(report) -> str``.  The page has inline CSS and inline
SVG charts only — no scripts, fonts, images or URLs — so it opens from a
file share, an AWX artifact or an e-mail attachment without a network, and
every value is HTML-escaped (host names and error texts come from hosts).
Each column header names the control IDs it evidences, and each row carries
``data-host``/``data-status`` attributes (tests and scripts read them).
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

from ansible_collections.fleetsafe.backup.plugins.plugin_utils._report import (
    DEFAULT_POLICY,
)
from ansible_collections.fleetsafe.backup.plugins.plugin_utils._store import parse_ts

COLOURS = {"green": "#1f8a4c", "amber": "#c77c02", "red": "#c0392b", "grey": "#8a94a6"}
SOFT = {"green": "#e8f5ee", "amber": "#fdf3e1", "red": "#fbeaea", "grey": "#f1f3f6"}

CSS = """
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#1d2533;background:#f4f6f9}
header{background:#1d2b45;color:#fff;padding:20px 32px}
header h1{margin:0;font-size:22px;font-weight:600}
header .meta{color:#b9c3d6;font-size:13px;margin-top:4px}
main{padding:24px 32px;max-width:1500px}
section{background:#fff;border:1px solid #dde2ea;border-radius:8px;padding:18px 20px;margin-bottom:20px}
h2{font-size:16px;margin:0 0 12px;font-weight:600}
.cards{display:flex;gap:14px;flex-wrap:wrap;margin-bottom:14px}
.card{flex:1 1 140px;border-radius:8px;padding:12px 16px;border:1px solid #dde2ea}
.card .n{font-size:28px;font-weight:700}
.card .l{font-size:12px;text-transform:uppercase;letter-spacing:.05em;color:#5b667a}
.ctl{display:inline-block;font:600 10px/1.6 ui-monospace,SFMono-Regular,Menlo,monospace;color:#3b4a66;background:#e9eef7;border-radius:3px;padding:0 4px;margin:1px 2px 1px 0;white-space:nowrap}
table{border-collapse:collapse;width:100%}
th{text-align:left;font-size:12px;color:#5b667a;font-weight:600;border-bottom:2px solid #dde2ea;padding:8px 8px;vertical-align:bottom}
td{border-bottom:1px solid #eceff4;padding:8px 8px;vertical-align:top}
td.cell{border-left:4px solid transparent}
.v{font-weight:600}
.sub{font-size:12px;color:#5b667a}
.pill{display:inline-block;border-radius:10px;padding:1px 10px;font-weight:700;font-size:12px;color:#fff;text-transform:uppercase;letter-spacing:.04em}
.reasons{margin:6px 0 0;padding-left:16px;font-size:12px;color:#3b4351}
.host{font-weight:700;font-size:15px}
.nodata{color:#8a94a6;font-style:italic}
.legend span{margin-right:14px;font-size:12px}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px;vertical-align:middle}
dl.policy{display:grid;grid-template-columns:max-content auto;gap:2px 16px;font-size:13px;margin:0}
dl.policy dt{color:#5b667a}
footer{color:#5b667a;font-size:12px;padding:0 32px 24px}
code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _ctl(ids: list[str]) -> str:
    return "".join(f'<span class="ctl">{_e(i)}</span>' for i in ids)


def _pill(status: str, text: str | None = None) -> str:
    return f'<span class="pill" style="background:{COLOURS.get(status, COLOURS["grey"])}">{_e(text or status)}</span>'


def human_bytes(value: Any) -> str:
    if not isinstance(value, int | float):
        return "–"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover - loop always returns


def human_duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "–"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def human_age(hours: Any) -> str:
    if not isinstance(hours, int | float):
        return ""
    if hours < 0:
        return "after the report time"  # a report built for a fixed earlier "now"
    if hours < 1:
        return f"{int(hours * 60)} min ago"
    if hours < 48:
        return f"{hours:.1f} h ago"
    return f"{hours / 24:.1f} days ago"


def human_time(value: Any) -> str:
    dt = parse_ts(value)
    return dt.strftime("%Y-%m-%d %H:%M UTC") if dt else "–"


def _cell(check: dict[str, Any] | None, main: str, sub: str = "") -> str:
    if not check:
        return '<td class="cell nodata">no data</td>'
    status = check.get("status", "grey")
    style = f"border-left-color:{COLOURS.get(status)};background:{SOFT.get(status)}" if status != "green" else f"border-left-color:{COLOURS['green']}"
    title = _e(check.get("message"))
    return (
        f'<td class="cell" data-status="{_e(status)}" style="{style}" title="{title}">'
        f'<div class="v">{main}</div><div class="sub">{sub or title}</div></td>'
    )


def _sparkline(history: list[dict[str, Any]]) -> str:
    values: list[float] = [float(h["bytes_added"]) for h in history if isinstance(h.get("bytes_added"), int | float)]
    if len(values) < 2:
        return '<span class="sub">–</span>'
    width, height = 120, 28
    top = max(values) or 1
    step = width / (len(values) - 1)
    points = " ".join(f"{i * step:.1f},{height - 2 - (v / top) * (height - 4):.1f}" for i, v in enumerate(values))
    return (
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="bytes added, last {len(values)} backups">'
        f'<polyline fill="none" stroke="#3d6bc4" stroke-width="1.5" points="{points}"/></svg>'
    )


def _status_bar(summary: dict[str, int]) -> str:
    total = max(1, summary.get("hosts", 0))
    width, x, parts = 600, 0.0, []
    for status in ("green", "amber", "red"):
        w = width * summary.get(status, 0) / total
        if w:
            parts.append(f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="18" fill="{COLOURS[status]}"><title>{status}: {summary.get(status, 0)}</title></rect>')
        x += w
    return (
        f'<svg width="100%" height="18" viewBox="0 0 {width} 18" preserveAspectRatio="none" role="img" aria-label="hosts by status">'
        f'<rect width="{width}" height="18" fill="#eceff4"/>{"".join(parts)}</svg>'
    )


def _daily_chart(days: list[dict[str, Any]]) -> str:
    if not days:
        return '<p class="sub">No history.</p>'
    width, height, pad_l, pad_b = 900, 180, 34, 22
    plot_h = height - pad_b - 8
    top = max(1, max(d["success"] + d["partial"] + d["failure"] for d in days))
    col = (width - pad_l) / len(days)
    bar = max(4.0, col * 0.62)
    out = [f'<svg width="100%" viewBox="0 0 {width} {height}" role="img" aria-label="backups per day by outcome">']
    for frac in (0, 0.5, 1):
        y = 8 + plot_h * (1 - frac)
        out.append(f'<line x1="{pad_l}" x2="{width}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e7ee"/>')
        out.append(f'<text x="{pad_l - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end" fill="#5b667a">{round(top * frac)}</text>')
    for i, d in enumerate(days):
        x = pad_l + i * col + (col - bar) / 2
        y = 8 + plot_h
        for key, colour in (("success", COLOURS["green"]), ("partial", COLOURS["amber"]), ("failure", COLOURS["red"])):
            h = plot_h * d[key] / top
            if h:
                y -= h
                out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{colour}"><title>{_e(d["day"])}: {d[key]} {key}</title></rect>')
        out.append(f'<text x="{x + bar / 2:.1f}" y="{height - 6}" font-size="10" text-anchor="middle" fill="#5b667a">{_e(d["day"][5:])}</text>')
    out.append("</svg>")
    return "".join(out)


def _host_row(h: dict[str, Any]) -> str:
    name = _e(h["name"])
    reasons = "".join(f"<li>{_ctl(r['controls'])} {_e(r['message'])}</li>" for r in h.get("reasons", []))
    status_td = f'<td>{_pill(h["status"])}{f"<ul class=reasons>{reasons}</ul>" if reasons else ""}</td>'
    head = f'<tr data-host="{name}" data-status="{_e(h["status"])}"><td class="host">{name}</td>{status_td}'
    if not h.get("has_data"):
        coll = h.get("collection") or {}
        return head + '<td class="cell nodata" colspan="6">no data</td>' + _cell(coll, human_time(coll.get("last_collect")) if coll.get("last_collect") else "never", human_age(coll.get("age_hours")) or "&nbsp;") + "<td></td></tr>"
    full, incr, last = h["last_full"], h["last_incremental"], h["last_backup"]
    ver, chain, fail, coll = h["verify"], h["audit_chain"], h["failures"], h["collection"]

    def snap(c: dict[str, Any]) -> str:
        return human_time(c.get("time")) if c.get("present") else "none"

    cells = [
        _cell(full, snap(full), f"{human_age(full.get('age_hours'))} · {_e(full['message'])}" if full.get("present") else _e(full["message"])),
        _cell(incr, snap(incr), f"{human_age(incr.get('age_hours'))} · {_e(incr['message'])}" if incr.get("present") else _e(incr["message"])),
        _cell(
            last,
            f"{human_bytes(last.get('bytes_added'))} in {human_duration(last.get('duration_seconds'))}" if last.get("present") else "–",
            _e(f"{last.get('result')} · snapshot {str(last.get('snapshot_id') or '')[:12]}") if last.get("present") else "",
        ),
        _cell(ver, f"{_e(ver.get('result', 'none'))} ({_e(ver.get('mode', '–'))})" if ver.get("present") else "none", f"{human_age(ver.get('age_hours'))} · {_e(ver['message'])}"),
        _cell(chain, _e(chain["chain_status"]), _e(chain["message"]) + f" · {chain['events']} events"),
        _cell(fail, str(fail["count"]), _e(fail["message"])),
        _cell(coll, human_time(coll.get("last_collect")), human_age(coll.get("age_hours"))),
    ]
    return head + "".join(cells) + f"<td>{_sparkline(h.get('history', []))}</td></tr>"


def _failure_section(hosts: list[dict[str, Any]]) -> str:
    rows = []
    for h in hosts:
        for item in (h.get("failures") or {}).get("items", []):
            rows.append(
                f"<tr><td>{_e(h['name'])}</td><td>{_e(human_time(item.get('ts')))}</td><td>{_e(item.get('seq'))}</td>"
                f"<td>{_e(item.get('action'))} {_e(item.get('type') or '')}</td><td>{_pill('red' if item.get('status') in ('failure', 'damaged') else 'amber', item.get('status'))}</td>"
                f"<td>{_e(item.get('error') or '')}</td></tr>"
            )
    if not rows:
        return '<p class="sub">No failed, partial or denied events in the window.</p>'
    return "<table><tr><th>Host</th><th>Time</th><th>Seq</th><th>Action</th><th>Status</th><th>First error</th></tr>" + "".join(rows) + "</table>"


def render_html(report: dict[str, Any]) -> str:
    summary = report["summary"]
    policy = report["policy"]
    generated = parse_ts(report["generated_at"]) or datetime.now()
    cards = "".join(
        f'<div class="card" style="background:{SOFT[s]};border-color:{COLOURS[s]}"><div class="n" style="color:{COLOURS[s]}">{summary.get(s, 0)}</div><div class="l">{s}</div></div>'
        for s in ("green", "amber", "red")
    )
    header_cols = [
        ("Host", []),
        ("Status", []),
        ("Last full", ["FREQ-FULL"]),
        ("Last incremental", ["FREQ-INCR"]),
        ("Last snapshot: added / duration", ["LOC-ONSITE"]),
        ("Verify", ["VER-CHECKSUM", "ENC-TEST"]),
        ("Audit chain", ["AUD-LOG"]),
        (f"Failures ({policy['failure_window_hours']} h)", ["AUD-LOG", "MON-DAILY", "MON-ESCALATE"]),
        ("Collected", ["MON-DAILY"]),
        ("Bytes added (trend)", []),
    ]
    thead = "".join(f"<th>{_e(label)}<br>{_ctl(ids)}</th>" for label, ids in header_cols)
    rows = "".join(_host_row(h) for h in report["hosts"])
    # Only the keys this report applies (DEFAULT_POLICY): fleetsafe_policy is shared with other
    # tasks, and their keys next to ours (incremental_interval_minutes beside incr_interval_minutes,
    # verify_max_age_days beside verify_max_age_hours) read as contradictions.
    shown_policy = {k: policy[k] for k in DEFAULT_POLICY if k in policy}
    policy_dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(', '.join(v) if isinstance(v, list) else v)}</dd>" for k, v in shown_policy.items())
    controls = "".join(f"<dt>{_ctl([cid])}</dt><dd>{_e(text)}</dd>" for cid, text in report["controls"].items())
    run = report.get("run") or {}
    run_text = " · ".join(f"{_e(k)}={_e(v)}" for k, v in run.items())
    others = report.get("store_hosts_not_in_report") or []
    others_html = f'<p class="sub">Also in the store, not in this inventory: {_e(", ".join(others))}</p>' if others else ""
    legend = "".join(f'<span><i class="sw" style="background:{COLOURS[s]}"></i>{label}</span>' for s, label in (("green", "success"), ("amber", "partial"), ("red", "failed")))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fleetsafe fleet report {_e(generated.strftime("%Y-%m-%d %H:%M UTC"))}</title>
<style>{CSS}</style></head>
<body>
<header><h1>Fleet backup report</h1>
<div class="meta">Generated {_e(generated.strftime("%Y-%m-%d %H:%M:%S UTC"))} from the central audit store · {summary["hosts"]} hosts · incremental window in {_e(report.get("timezone"))} · {_ctl(report.get("report_controls", []))}</div></header>
<main>
<section id="summary"><h2>Fleet status {_ctl(["CONSOLE", "MON-DAILY"])}</h2>
<div class="cards"><div class="card"><div class="n">{summary["hosts"]}</div><div class="l">hosts</div></div>{cards}</div>
{_status_bar(summary)}</section>
<section id="hosts"><h2>Hosts</h2>
<table id="host-table"><thead><tr>{thead}</tr></thead><tbody>{rows}</tbody></table>{others_html}</section>
<section id="history"><h2>Backups per day, last {policy["history_days"]} days (UTC) {_ctl(report["daily_backups"]["controls"])}</h2>
<div class="legend">{legend}</div>{_daily_chart(report["daily_backups"]["days"])}</section>
<section id="failures"><h2>Failed, partial and denied events ({policy["failure_window_hours"]} h) {_ctl(["AUD-LOG", "AUD-MON", "MON-DAILY"])}</h2>{_failure_section(report["hosts"])}</section>
<section id="policy"><h2>Policy applied</h2><p class="sub">Only the settings this report applies. Other keys of <code>fleetsafe_policy</code> belong to other tasks and are not shown (e.g. <code>incremental_interval_minutes</code>, the site playbook's re-run interval); <code>verify_max_age_days</code> is applied as <code>verify_max_age_hours</code> (days × 24 + 2 h) unless that is set.</p><dl class="policy">{policy_dl}</dl></section>
<section id="controls"><h2>Controls cited</h2><dl class="policy">{controls}</dl></section>
</main>
<footer>fleetsafe.backup.fleet_report · report schema {report["schema_version"]} · store <code>{_e(report.get("store"))}</code> (schema {_e(report.get("store_schema_version"))}){" · " + run_text if run_text else ""} · fingerprint <code>{_e(report["fingerprint"][:16])}</code></footer>
</body></html>
"""
