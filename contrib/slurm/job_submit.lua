-- SPDX-License-Identifier: MIT
-- Slurm job_submit plugin for mvm jobs (docs/cluster.md).  A batch script
-- states its VM's shape in "#MVM" lines, with mvmctl's option names:
--
--   #MVM --vcpus 2 --mem 512M --pool lic
--
-- and this plugin turns them into the resources Slurm schedules by:
-- --cpus-per-task (vCPUs), --mem (guest memory plus mvmd's per-VM VMM
-- overhead, as mvmd charges it) and one licence per pool (Licenses=NAME:N
-- in slurm.conf; a pool is per host in mvm, a licence cluster-wide, so the
-- licence count is the sum of the hosts' pool sizes).  Scripts without
-- "#MVM" lines are left alone.  Install next to slurm.conf, with
-- JobSubmitPlugins=lua.

-- mvmd's vmm_overhead (MiB), the default of daemon/capacity.h
local VMM_OVERHEAD_MIB = 8
local DEFAULT_MEM_MIB = 128     -- vm.create's default
local DEFAULT_VCPUS = 1

local function mem_mib(s)
	local n, unit = s:match("^(%d+)(%a*)$")
	if not n then return nil end
	unit = unit:lower()
	if unit == "" or unit == "m" or unit == "mb" or unit == "mib" then
		return tonumber(n)
	elseif unit == "g" or unit == "gb" or unit == "gib" then
		return tonumber(n) * 1024
	end
	return nil
end

-- The options of every "#MVM" line: vcpus, mem_mib, pools; or nil, error.
local function parse(script)
	local vm = { vcpus = DEFAULT_VCPUS, mem_mib = DEFAULT_MEM_MIB, pools = {} }
	local found = false
	for line in script:gmatch("[^\n]+") do
		local rest = line:match("^#MVM%s+(.*)$")
		if rest then
			found = true
			local words = {}
			for w in rest:gmatch("%S+") do words[#words + 1] = w end
			local i = 1
			while i <= #words do
				local opt, val = words[i], words[i + 1]
				local k, v = opt:match("^(%-%-%a+)=(.+)$")
				if k then opt, val, i = k, v, i - 1 end
				if val == nil then return nil, "#MVM " .. opt .. " needs a value" end
				if opt == "--vcpus" then
					vm.vcpus = tonumber(val:match("^%d+$") or "")
					if not vm.vcpus or vm.vcpus < 1 then
						return nil, "#MVM --vcpus wants a positive number, not " .. val
					end
				elseif opt == "--mem" then
					vm.mem_mib = mem_mib(val)
					if not vm.mem_mib then
						return nil, "#MVM --mem wants a size like 256, 256M or 1G, not " .. val
					end
				elseif opt == "--pool" then
					if not val:match("^[a-z0-9_-]+$") then
						return nil, "#MVM --pool wants a pool name [a-z0-9_-], not " .. val
					end
					vm.pools[#vm.pools + 1] = val
				else
					return nil, "#MVM knows --vcpus, --mem and --pool, not " .. opt
				end
				i = i + 2
			end
		end
	end
	if not found then return nil, nil end
	return vm, nil
end

function slurm_job_submit(job_desc, part_list, submit_uid)
	if job_desc.script == nil then return slurm.SUCCESS end
	local vm, err = parse(job_desc.script)
	if err then
		slurm.log_user("mvm: %s", err)
		return slurm.ERROR
	end
	if not vm then return slurm.SUCCESS end
	job_desc.cpus_per_task = vm.vcpus
	job_desc.pn_min_memory = vm.mem_mib + VMM_OVERHEAD_MIB
	if #vm.pools > 0 then
		local lic = {}
		for _, p in ipairs(vm.pools) do lic[#lic + 1] = p .. ":1" end
		local have = job_desc.licenses
		if have ~= nil and have ~= "" then table.insert(lic, 1, have) end
		job_desc.licenses = table.concat(lic, ",")
	end
	slurm.log_info("mvm: job from uid %d: %d vCPUs, %d MiB, licences %s", submit_uid,
	               vm.vcpus, job_desc.pn_min_memory, job_desc.licenses or "none")
	return slurm.SUCCESS
end

function slurm_job_modify(job_desc, job_rec, part_list, modify_uid)
	return slurm.SUCCESS
end

return slurm.SUCCESS
