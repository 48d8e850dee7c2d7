"""The Pulumi program: `pulumi up --stack local|dev|prod` runs this."""

from stacks.program import main

main()
