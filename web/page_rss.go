package web

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"time"

	"builds/app"
)

// RSS 2.0 feeds of a user's jobs, whole or per tag prefix
// (behaviour.md §5): one item per job visible to the reader, newest
// first. With ?search= and no status: term, only finished jobs are
// listed, so a feed reader sees each result once.

type rssFeed struct {
	XMLName xml.Name   `xml:"rss"`
	Version string     `xml:"version,attr"`
	Channel rssChannel `xml:"channel"`
}

type rssChannel struct {
	Title       string    `xml:"title"`
	Link        string    `xml:"link"`
	Description string    `xml:"description"`
	Items       []rssItem `xml:"item"`
}

type rssItem struct {
	Title       string `xml:"title"`
	Link        string `xml:"link"`
	GUID        string `xml:"guid"`
	Description string `xml:"description,omitempty"`
	Author      string `xml:"author"`
	PubDate     string `xml:"pubDate"`
}

func (u *ui) handleUserRSS(w http.ResponseWriter, r *http.Request) {
	u.serveRSS(w, r, r.PathValue("user"), "")
}

func (u *ui) serveRSS(w http.ResponseWriter, r *http.Request, name, tags string) {
	owner, err := u.findUser(r.Context(), name)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	f := app.JobFilter{}
	if tags != "" {
		f.TagPrefix = &tags
	}
	search := r.URL.Query().Get("search")
	terms, err := parseSearch(search)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	f.Search = terms
	if search != "" && !hasStatusTerm(terms) {
		f.Status = []app.JobStatus{app.JobSuccess, app.JobFailed, app.JobTimeout, app.JobCancelled}
	}
	list, err := u.svc.UserJobs(r.Context(), owner.ID, nil, f)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	origin := u.cfg.Builds.Origin
	path := "/~" + owner.Username
	if tags != "" {
		path += "/" + tags
	}
	feed := rssFeed{Version: "2.0", Channel: rssChannel{
		Title:       fmt.Sprintf("%s builds for ~%s", u.cfg.Builds.SiteName, owner.Username),
		Link:        origin + path,
		Description: "Build jobs of ~" + owner.Username,
	}}
	if tags != "" {
		feed.Channel.Title += "/" + tags
	}
	for _, j := range list.Jobs {
		link := origin + jobPath(owner.Username, j.ID)
		feed.Channel.Items = append(feed.Channel.Items, rssItem{
			Title: fmt.Sprintf("#%d (%s)", j.ID, j.Status), Link: link, GUID: link,
			Description: deref(j.Note), Author: owner.Username, PubDate: j.Updated.UTC().Format(time.RFC1123Z),
		})
	}
	out, err := xml.MarshalIndent(feed, "", "  ")
	if err != nil {
		u.fail(w, r, fmt.Errorf("render feed: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/rss+xml; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write([]byte(xml.Header))
	w.Write(out)
}

func hasStatusTerm(terms []app.SearchTerm) bool {
	for _, t := range terms {
		if t.Key == "status" {
			return true
		}
	}
	return false
}
