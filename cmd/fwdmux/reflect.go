package main

import (
	"reflect"
	"strings"
)

func structTags(v any) []string {
	var out []string
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if f.Anonymous && f.Type.Kind() == reflect.Struct {
				walk(f.Type)
				continue
			}
			tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if tag != "" && tag != "-" {
				out = append(out, tag)
			}
		}
	}
	walk(reflect.TypeOf(v))
	return out
}
