"""The built-in offline agents: the literal-mutation researcher and its moves, and the
rule-based analyzer.
"""
