"""Entry points: the ``kale`` command, the shared entry code of jobs/*.py, the
whole-pipeline runner and the plan.

    commands.py   the ``kale`` command (console script ``kale_spark.cli:main``)
    entry.py      config arguments, logging, running one stage: shared by all entries
    jobmain.py    ``job_main(stage)``, what every jobs/<stage>.py calls
    pipeline.py   ``kale run`` / ``kale demo``: every stage in order
    plan.py       ``kale plan``: the cluster a run needs

May import every other package; nothing imports it.
"""


def main(argv=None) -> int:
    """The console script ``kale`` (pyproject: ``kale_spark.cli:main``); the commands load
    only when it runs, so importing ``kale_spark.cli.entry`` stays light."""
    from kale_spark.cli.commands import main as run

    return run(argv)
