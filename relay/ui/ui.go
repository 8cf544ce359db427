// Package ui is the nodebatch web UI: static ES modules and CSS embedded in
// the relay binary (no front-end build step), plus the two small read-only
// HTTP handlers the pages need besides the batch API: the node list
// (NodesHandler) and the page configuration (ConfigHandler).
package ui

import (
	"embed"
	"io/fs"
)

//go:embed static
var static embed.FS

// FS returns the files under static/, rooted so that "index.html" is at the
// top; serve it with http.FileServerFS(ui.FS()).
func FS() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		// fs.Sub fails only on an invalid path; "static" is a constant.
		panic(err)
	}
	return sub
}
