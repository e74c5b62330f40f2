package main

// raceEnabled is set by race_test.go when the tests run with -race.
var raceEnabled bool
