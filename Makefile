# tsidp's developer targets. The image itself is described in deploy/Dockerfile.
#
#   make build                    release build of tsidp (.build/release/tsidp)
#   make test                     every test (scripts/test)
#   make publishdevtsidp REPO=ghcr.io/you/tsidp TAGS=v0.0.1,latest PUSH=true
#                                 build the image as REPO:<first tag>, tag it with the other
#                                 tags, and push each tag when PUSH=true

DOCKER ?= docker
SWIFT ?= swift
REPO ?=
TAGS ?= latest
PUSH ?= false

comma := ,
empty :=
space := $(empty) $(empty)
tag_list := $(strip $(subst $(comma),$(space),$(TAGS)))
first_tag := $(firstword $(tag_list))
other_tags := $(wordlist 2,$(words $(tag_list)),$(tag_list))

# One recipe line per tag: a newline in an expanded recipe line starts a new command.
define newline


endef

.PHONY: build test publishdevtsidp

build:
	$(SWIFT) build -c release --product tsidp

test:
	scripts/test

publishdevtsidp:
ifeq ($(strip $(REPO)),)
	$(error REPO is required, e.g. make publishdevtsidp REPO=ghcr.io/you/tsidp TAGS=v0.0.1,latest PUSH=true)
endif
ifeq ($(first_tag),)
	$(error TAGS is empty; give at least one tag, e.g. TAGS=v0.0.1,latest)
endif
	$(DOCKER) build -f deploy/Dockerfile -t $(REPO):$(first_tag) .
	$(foreach tag,$(other_tags),$(DOCKER) tag $(REPO):$(first_tag) $(REPO):$(tag)$(newline))
ifeq ($(PUSH),true)
	$(foreach tag,$(tag_list),$(DOCKER) push $(REPO):$(tag)$(newline))
endif
