"""The province simulator: lifelike traffic of the sample province's agency systems."""
