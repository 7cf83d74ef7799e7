"""On-device training methods: what is trained beside the frozen int8 backbone."""
