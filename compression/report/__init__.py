"""The job report: a self-contained ``report.html`` with the job's numbers and pictures.

``relevance_samples(original, compressed, data)`` computes input relevance maps for a few
samples; ``render_report(metrics, samples, title=...)`` draws everything into one page.
"""

from compression.report.render import CONTENT_SECURITY_POLICY, render_report
from compression.report.samples import RelevanceSamples, relevance_samples

__all__ = ["CONTENT_SECURITY_POLICY", "RelevanceSamples", "relevance_samples", "render_report"]
