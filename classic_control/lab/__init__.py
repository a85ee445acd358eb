"""The estimator lab: experiments that measure what the policy-gradient lectures claim.

``python -m classic_control lab {gradients,importance,actor-critic,kl-penalty}``;
each writes a JSON of its numbers and PNG plots. ``docs/lessons.md`` walks
through them. Every estimate goes through the same core functions and
networks that train the agents.
"""
