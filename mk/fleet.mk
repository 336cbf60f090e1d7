# The container fleet (issue 3): systemd containers driven over real SSH.
#
#   make demo-fleet          build the host image once (cached), start 2 servers + 1 workstation,
#                            write inventories/demo/hosts.yml, run playbooks/site.yml over SSH
#   make demo-fleet-add      onboard one more host (HOST=ws-2 GROUP=workstations) and re-run site
#   make demo-fleet-down     remove the demo fleet's containers and generated inventory
#   make fleet-test          only the fleet tests (pytest -m fleet: molecule scenarios + fleet test)
#   make fleet-host-setup    podman, runc, debootstrap, openssh; /etc/containers/containers.conf
#   make fleet-image         the test-host image (skipped when current; FORCE=1 rebuilds)
#
# Ports: the demo fleet uses 127.0.0.1:22001-22010; tests and molecule use 22021+ (see
# docs/fleet.md), so a demo fleet and a test run can coexist.

.PHONY: fleet-host-setup fleet-image fleet-collections demo-fleet demo-fleet-add \
        demo-fleet-down demo-fleet-status fleet-test

FLEET_IMAGE      ?= localhost/fleetsafe-host:bookworm
FLEET_STATE_DIR  := $(CURDIR)/build/fleet
FLEET_COLLECTIONS := $(CURDIR)/build/collections
FLEETCTL         := python3 tools/fleet/fleetctl.py --state-dir $(FLEET_STATE_DIR)
DEMO_FLEET_HOSTS ?= srv-1:servers srv-2:servers ws-1:workstations
DEMO_FLEET_PORT  ?= 22001
DEMO_FLEET_USER  ?= root
DEMO_FLEET_INV   := inventories/demo
# Ansible sees this working tree as the collection fleetsafe.backup (TESTBED §2).
FLEET_ANSIBLE_ENV := ANSIBLE_COLLECTIONS_PATH=$(FLEET_COLLECTIONS) FLEET_IMAGE=$(FLEET_IMAGE)
HOST  ?= ws-2
GROUP ?= workstations

export FLEET_IMAGE

fleet-host-setup:
	@tools/testbed/host-setup.sh

fleet-image: fleet-host-setup
	@tools/testbed/build-image.sh $(FLEET_IMAGE)

fleet-collections:
	@mkdir -p $(FLEET_COLLECTIONS)/ansible_collections/fleetsafe
	@ln -sfn $(CURDIR) $(FLEET_COLLECTIONS)/ansible_collections/fleetsafe/backup

demo-fleet: venv fleet-image fleet-collections
	$(FLEETCTL) up demo $(addprefix --host ,$(DEMO_FLEET_HOSTS)) --base-port $(DEMO_FLEET_PORT) \
	  --user $(DEMO_FLEET_USER) --image $(FLEET_IMAGE) --inventory $(DEMO_FLEET_INV)
	$(FLEET_ANSIBLE_ENV) $(VENV)/bin/ansible-playbook -i $(DEMO_FLEET_INV) playbooks/site.yml

demo-fleet-add: venv fleet-collections
	$(FLEETCTL) add demo $(HOST) --group $(GROUP)
	$(FLEET_ANSIBLE_ENV) $(VENV)/bin/ansible-playbook -i $(DEMO_FLEET_INV) playbooks/site.yml

demo-fleet-status:
	@$(FLEETCTL) status demo

demo-fleet-down:
	$(FLEETCTL) down demo

fleet-test: venv fleet-image fleet-collections
	$(VENV)/bin/pytest -m fleet tests/fleet

# `make test` runs the fleet tests too (tests/fleet, marker "fleet"): they need podman and
# the host image. Adding prerequisites here keeps the Makefile's own `test` recipe.
test: fleet-image fleet-collections
