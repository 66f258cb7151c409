#!/bin/bash
# Count the lines of a fixed text with an allowlisted command.
printf "alpha\nbeta\ngamma\n" | wc -l
