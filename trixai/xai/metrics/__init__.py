"""Explanation metrics: faithfulness, localisation, stability under attack, parameter-randomisation sanity."""
