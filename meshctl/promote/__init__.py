"""`meshctl promote`: move traffic to a new version step by step, each step a gated, judged commit."""
