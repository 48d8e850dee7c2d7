"""The Pulumi program: `pulumi up --stack local|dev|prod` runs this."""

from stacks.gc_tuning import tune_for_program_run

# Before the imports: they are a third of the run, and most of their objects live on.
tune_for_program_run()

from stacks.program import main  # noqa: E402

main()
