"""The run report: ``RUN/report.html`` from the run folder alone (see :mod:`lenslab.report.run`)."""
