"""JUnit XML: one test case per sample, failing when it is not certified (GitLab, Jenkins, Azure read it)."""

from __future__ import annotations

import math
import os
from xml.etree import ElementTree as ET

from ..certify import CertifyResult


def as_junit(result: CertifyResult, model: str) -> str:
    o = result.options
    stem = os.path.splitext(os.path.basename(model))[0] or "model"
    failures = sum(s.verdict != "verified" for s in result.samples)
    per = result.wall_time / max(result.n, 1)
    suites = ET.Element("testsuites", name="srp-audit", tests=str(result.n), failures=str(failures), time=f"{result.wall_time:.3f}")
    suite = ET.SubElement(suites, "testsuite", name=f"srp-audit certify {stem} eps={o.eps:g} method={o.method}",
                          tests=str(result.n), failures=str(failures), errors="0", skipped="0", time=f"{result.wall_time:.3f}")
    props = ET.SubElement(suite, "properties")
    for k, v in (("model", model), ("eps", f"{o.eps:g}"), ("norm", o.norm), ("method", o.method), ("device", result.device)):
        ET.SubElement(props, "property", name=k, value=v)
    for s in result.samples:
        case = ET.SubElement(suite, "testcase", classname=f"srp_audit.{stem}", name=f"sample {s.index} (label {s.label})",
                             time=f"{per:.4f}")
        if s.verdict != "verified":
            bound = f"{s.bound:+.6f}" if math.isfinite(s.bound) else "none"
            attack = f"{s.attack_radius:.6f}" if s.attack_radius is not None else "none"
            msg = (f"{s.verdict} at eps {o.eps:g}: worst margin bound {bound}, certified radius {s.certified_radius:.6f}, "
                   f"attack radius {attack}, prediction {s.prediction}")
            fail = ET.SubElement(case, "failure", message=msg, type=s.verdict)
            fail.text = msg
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
