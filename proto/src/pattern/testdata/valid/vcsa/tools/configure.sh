#!/bin/sh
set -eu
echo configured
