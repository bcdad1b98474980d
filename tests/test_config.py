"""Tests for L{mdsvc.config}: nova.conf-compatible INI loading and its one-line errors."""

from __future__ import annotations

import os
import re
import textwrap

from twisted.trial.unittest import SynchronousTestCase

from mdsvc.config import OPTIONS, ConfigError, check_config, known_options, load_config, load_values, located, vendor_options

OPERATOR_NOVA_CONF = """\
[DEFAULT]
# Managed by the deployment tool; do not edit.
debug = true
state_path = /srv/nova
my_ip = 192.0.2.10
transport_url = rabbit://nova:secret@controller:5672/
metadata_listen = 192.0.2.10
metadata_listen_port = 8775
metadata_workers = 4
enabled_apis = osapi_compute,metadata
log_dir = /var/log/nova
; an ini-style comment
flat_injected = False

[api]
auth_strategy = keystone
metadata_cache_expiration = 30
dhcp_domain = cloud.example
dhcp_domain = example.org
vendordata_providers = StaticJSON, DynamicJSON
vendordata_jsonfile_path = $state_path/vendor_data.json
vendordata_dynamic_targets = testing@http://127.0.0.1:123, hamster@http://127.0.0.1:124
vendordata_dynamic_connect_timeout = 7
vendordata_dynamic_read_timeout = 0
vendordata_dynamic_failure_fatal = yes
vendordata_dynamic_ssl_certfile = /etc/ssl/certs/ca.pem
config_drive_skip_versions = 1.0 2007-01-19

[database]
connection = mysql+pymysql://nova:secret@controller/nova

[api_database]
connection = mysql+pymysql://nova:secret@controller/nova_api

[keystone_authtoken]
www_authenticate_uri = http://controller:5000/
auth_url = http://controller:5000/
memcached_servers = controller:11211
auth_type = password
password = NOVA_PASS

[neutron]
auth_url = http://controller:5000
service_metadata_proxy = true
metadata_proxy_shared_secret = METADATA$SECRET

[glance]
api_servers = http://controller:9292

[oslo_concurrency]
lock_path = $state_path/tmp
"""


class ConfigTestsMixin:
    """Writing configuration files into the test's temporary directory."""

    def writeConfig(self, text: str, name: str = "nova.conf") -> str:
        directory = self.mktemp()  # type: ignore[attr-defined]
        os.makedirs(directory)
        path = os.path.join(directory, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(textwrap.dedent(text))
        return path


class DefaultsTests(SynchronousTestCase):
    """Without a file, mdsvc runs on its defaults, demo on."""

    def test_noFile(self) -> None:
        """load_config(None) gives the documented defaults."""
        config = load_config(None)
        self.assertIsNone(config.source)
        self.assertTrue(config.demo)
        self.assertEqual(config.state_path, "/var/lib/mdsvc")
        self.assertEqual(config.store, "sqlite:/var/lib/mdsvc/mdsvc.sqlite")
        api = config.api
        self.assertEqual(api.listen_endpoint, "tcp:8775:interface=0.0.0.0")
        self.assertEqual(api.cache_expiration, 15)
        self.assertEqual(api.dhcp_domain, "novalocal")
        self.assertEqual(api.vendordata_providers, ("StaticJSON",))
        self.assertIsNone(api.vendordata_jsonfile_path)
        self.assertEqual(api.vendordata_dynamic_targets, ())
        self.assertEqual(api.vendordata_dynamic_ssl_certfile, "")
        self.assertEqual((api.vendordata_dynamic_connect_timeout, api.vendordata_dynamic_read_timeout), (5, 5))
        self.assertIs(api.vendordata_dynamic_failure_fatal, False)
        self.assertIs(api.use_forwarded_for, False)
        self.assertIs(api.service_metadata_proxy, False)
        self.assertEqual(api.shared_secret, "")
        self.assertIs(api.flat_injected, False)
        self.assertIsNone(api.injected_network_template)
        self.assertIs(api.debug, False)
        self.assertEqual(
            api.config_drive_skip_versions,
            ("1.0", "2007-01-19", "2007-03-01", "2007-08-29", "2007-10-10", "2007-12-15", "2008-02-01", "2008-09-01"),
        )

    def test_secretNotInRepr(self) -> None:
        """The shared secret is not shown by repr() (it ends up in logs)."""
        config = load_config(None, {("neutron", "metadata_proxy_shared_secret"): "hush-hush"})
        self.assertEqual(config.api.shared_secret, "hush-hush")
        self.assertNotIn("hush-hush", repr(config))

    def test_knownOptions(self) -> None:
        """known_options lists the option table."""
        self.assertEqual(tuple(known_options()), OPTIONS)


class OperatorFileTests(ConfigTestsMixin, SynchronousTestCase):
    """An operator's nova.conf works as it is."""

    def setUp(self) -> None:
        self.path = self.writeConfig(OPERATOR_NOVA_CONF)
        self.config = load_config(self.path)

    def test_loads(self) -> None:
        """Unrelated sections and options are ignored; known ones are read."""
        config = self.config
        self.assertEqual(config.source, self.path)
        self.assertFalse(config.demo)
        self.assertEqual(config.state_path, "/srv/nova")
        self.assertEqual(config.store, "sqlite:/srv/nova/mdsvc.sqlite")
        api = config.api
        self.assertTrue(api.debug)
        self.assertEqual(api.listen_endpoint, "tcp:8775:interface=192.0.2.10")
        self.assertEqual(api.cache_expiration, 30)
        self.assertEqual(api.vendordata_providers, ("StaticJSON", "DynamicJSON"))
        self.assertEqual(api.vendordata_dynamic_targets, ("testing@http://127.0.0.1:123", "hamster@http://127.0.0.1:124"))
        self.assertEqual((api.vendordata_dynamic_connect_timeout, api.vendordata_dynamic_read_timeout), (7, 0))
        self.assertIs(api.vendordata_dynamic_failure_fatal, True)
        self.assertEqual(api.vendordata_dynamic_ssl_certfile, "/etc/ssl/certs/ca.pem")
        self.assertEqual(api.config_drive_skip_versions, ("1.0", "2007-01-19"))
        self.assertIs(api.service_metadata_proxy, True)
        self.assertIs(api.flat_injected, False)

    def test_duplicateLastWins(self) -> None:
        """A duplicate option: the last one wins, as in oslo.config."""
        self.assertEqual(self.config.api.dhcp_domain, "example.org")

    def test_substitution(self) -> None:
        """C{$state_path} in a value is replaced by the option's value."""
        self.assertEqual(self.config.api.vendordata_jsonfile_path, "/srv/nova/vendor_data.json")

    def test_secretVerbatim(self) -> None:
        """The shared secret is taken as written, a dollar sign included."""
        self.assertEqual(self.config.api.shared_secret, "METADATA$SECRET")

    def test_checkConfigGood(self) -> None:
        """check_config finds nothing wrong with a good file."""
        self.assertEqual(check_config(self.path), [])


class OptionTests(ConfigTestsMixin, SynchronousTestCase):
    """Each option is read from its section, and old names still work."""

    def load(self, text: str):  # type: ignore[no-untyped-def]
        return load_config(self.writeConfig(text))

    def test_optionSections(self) -> None:
        """Every option name of the table is read from its own section."""
        config = self.load(
            """\
            [DEFAULT]
            state_path = /s
            debug = on
            metadata_listen = 127.0.0.1
            metadata_listen_port = 9999
            flat_injected = 1
            injected_network_template = /etc/nova/interfaces.template
            [api]
            metadata_cache_expiration = 0
            dhcp_domain = d.example
            vendordata_providers = DynamicJSON
            vendordata_jsonfile_path = /v.json
            vendordata_dynamic_targets = a@http://x
            vendordata_dynamic_ssl_certfile = /ca
            vendordata_dynamic_connect_timeout = 3
            vendordata_dynamic_read_timeout = 9
            vendordata_dynamic_failure_fatal = TRUE
            use_forwarded_for = True
            config_drive_skip_versions = 1.0
            [neutron]
            service_metadata_proxy = yes
            metadata_proxy_shared_secret = s
            [mdsvc]
            store = sqlite:/elsewhere/db.sqlite
            demo = true
            """
        )
        api = config.api
        self.assertEqual((config.state_path, config.store, config.demo), ("/s", "sqlite:/elsewhere/db.sqlite", True))
        self.assertEqual(
            (api.debug, api.listen_endpoint, api.flat_injected, api.cache_expiration, api.dhcp_domain),
            (True, "tcp:9999:interface=127.0.0.1", True, 0, "d.example"),
        )
        self.assertEqual(api.injected_network_template, "/etc/nova/interfaces.template")
        self.assertEqual(
            (api.vendordata_providers, api.vendordata_jsonfile_path, api.vendordata_dynamic_targets, api.vendordata_dynamic_ssl_certfile),
            (("DynamicJSON",), "/v.json", ("a@http://x",), "/ca"),
        )
        self.assertEqual(
            (api.vendordata_dynamic_connect_timeout, api.vendordata_dynamic_read_timeout, api.vendordata_dynamic_failure_fatal),
            (3, 9, True),
        )
        self.assertEqual(
            (api.use_forwarded_for, api.config_drive_skip_versions, api.service_metadata_proxy, api.shared_secret),
            (True, ("1.0",), True, "s"),
        )

    def test_wrongSectionIgnored(self) -> None:
        """An option in a section it does not belong to is not read."""
        config = self.load("[api]\nmetadata_listen_port = 1\n[DEFAULT]\nmetadata_cache_expiration = 99\n")
        self.assertEqual((config.api.listen_endpoint, config.api.cache_expiration), ("tcp:8775:interface=0.0.0.0", 15))

    def test_optionNamesCaseInsensitive(self) -> None:
        """Option names are case-insensitive, as in oslo.config."""
        self.assertEqual(self.load("[api]\nDHCP_Domain = x\n").api.dhcp_domain, "x")

    def test_apiEndpointOverridesListen(self) -> None:
        """[mdsvc] api_endpoint wins over metadata_listen and its port."""
        config = self.load("[DEFAULT]\nmetadata_listen = 10.0.0.1\n[mdsvc]\napi_endpoint = unix:/run/mdsvc/api.sock\n")
        self.assertEqual(config.api.listen_endpoint, "unix:/run/mdsvc/api.sock")

    def test_legacyDhcpDomain(self) -> None:
        """[DEFAULT] dhcp_domain (the pre-Train name) is read when [api] has none."""
        self.assertEqual(self.load("[DEFAULT]\ndhcp_domain = old.example\n").api.dhcp_domain, "old.example")

    def test_newNameWins(self) -> None:
        """When both names are set, [api] dhcp_domain wins."""
        config = self.load("[DEFAULT]\ndhcp_domain = old.example\n[api]\ndhcp_domain = new.example\n")
        self.assertEqual(config.api.dhcp_domain, "new.example")

    def test_legacyUseForwardedFor(self) -> None:
        """[DEFAULT] use_forwarded_for (the pre-Ocata name) is read."""
        self.assertIs(self.load("[DEFAULT]\nuse_forwarded_for = true\n").api.use_forwarded_for, True)

    def test_legacySharedSecret(self) -> None:
        """metadata_agent.ini's [DEFAULT] metadata_proxy_shared_secret is read too."""
        self.assertEqual(self.load("[DEFAULT]\nmetadata_proxy_shared_secret = agent-secret\n").api.shared_secret, "agent-secret")

    def test_emptyDhcpDomain(self) -> None:
        """An empty dhcp_domain is the empty string (hostnames without a domain), not the default."""
        self.assertEqual(self.load("[api]\ndhcp_domain =\n").api.dhcp_domain, "")

    def test_ipv6Listen(self) -> None:
        """An IPv6 metadata_listen gives a tcp6 endpoint with the colons escaped."""
        self.assertEqual(self.load("[DEFAULT]\nmetadata_listen = ::\n").api.listen_endpoint, "tcp6:8775:interface=\\:\\:")
        self.assertEqual(
            self.load("[DEFAULT]\nmetadata_listen = fd00::1\nmetadata_listen_port = 80\n").api.listen_endpoint,
            "tcp6:80:interface=fd00\\:\\:1",
        )

    def test_substitutionBraces(self) -> None:
        """C{${state_path}} works like C{$state_path}; C{$$} is a dollar."""
        config = self.load("[DEFAULT]\nstate_path = /data\n[mdsvc]\nstore = sqlite:${state_path}/x$$y.sqlite\n")
        self.assertEqual(config.store, "sqlite:/data/x$y.sqlite")

    def test_substitutionDefault(self) -> None:
        """C{$state_path} left unset is its default."""
        self.assertEqual(self.load("[api]\nvendordata_jsonfile_path = $state_path/v.json\n").api.vendordata_jsonfile_path,
                         "/var/lib/mdsvc/v.json")

    def test_substitutionNested(self) -> None:
        """A value found by substitution is substituted in turn, from any option of the file."""
        config = self.load("[DEFAULT]\nbase = /srv\nstate_path = $base/mdsvc\n[mdsvc]\nstore = sqlite:$state_path/db\n")
        self.assertEqual((config.state_path, config.store), ("/srv/mdsvc", "sqlite:/srv/mdsvc/db"))
        self.assertEqual(check_config(self.writeConfig("[DEFAULT]\nbase = /srv\nstate_path = $base/mdsvc\n")), [])

    def test_substitutionSameSectionFirst(self) -> None:
        """A name is looked up in the option's own section before [DEFAULT]."""
        config = self.load("[DEFAULT]\nzone = outer\n[api]\nzone = inner\ndhcp_domain = $zone.example\n")
        self.assertEqual(config.api.dhcp_domain, "inner.example")

    def test_overrides(self) -> None:
        """Overrides replace file values, as raw text."""
        path = self.writeConfig("[api]\nmetadata_cache_expiration = 1\n")
        values = load_values(path, {("api", "metadata_cache_expiration"): "2"})
        self.assertEqual(values[("api", "metadata_cache_expiration")], 2)


class ErrorTests(ConfigTestsMixin, SynchronousTestCase):
    """Every bad value is a one-line ConfigError naming file, line, option and what is allowed."""

    def assertConfigError(self, text: str, *expected: str) -> str:
        """Loading C{text} fails with one line containing each of C{expected}; check_config agrees."""
        path = self.writeConfig(text)
        e = self.assertRaises(ConfigError, load_config, path)
        message = str(e)
        self.assertEqual(message.splitlines(), [message])
        self.assertTrue(message.startswith(path + ":"), message)
        for part in expected:
            self.assertIn(part, message)
        self.assertEqual(check_config(path), [message])
        return message

    def test_badInt(self) -> None:
        """A non-integer gives the option, its line and the allowed range."""
        message = self.assertConfigError(
            "[DEFAULT]\n# comment\n\n[api]\nmetadata_cache_expiration = soon\n",
            ":5: [api] metadata_cache_expiration", "'soon'", "allowed: an integer >= 0",
        )
        self.assertTrue(message.endswith("nova.conf:5: [api] metadata_cache_expiration = 'soon': allowed: an integer >= 0"), message)

    def test_belowMinimum(self) -> None:
        """A connect timeout below Nova's minimum of 3 is refused."""
        self.assertConfigError(
            "[api]\nvendordata_dynamic_connect_timeout = 2\n",
            ":2: [api] vendordata_dynamic_connect_timeout = '2': allowed: an integer >= 3",
        )

    def test_portRange(self) -> None:
        """A port beyond 65535 is refused, naming the range."""
        self.assertConfigError("[DEFAULT]\nmetadata_listen_port = 70000\n", ":2: [DEFAULT] metadata_listen_port", "from 0 to 65535")

    def test_badBool(self) -> None:
        """A boolean that is none of oslo's spellings is refused."""
        self.assertConfigError(
            "[DEFAULT]\n[neutron]\nservice_metadata_proxy = maybe\n",
            ":3: [neutron] service_metadata_proxy = 'maybe': allowed: true or false",
        )

    def test_badChoice(self) -> None:
        """
        A vendordata provider that cannot be a name is refused, naming the built-in ones and
        plugins' (whether a plugin has a name is checked when the API starts: tests.test_plugins).
        """
        self.assertConfigError(
            "[api]\nvendordata_providers = StaticJSON, Static JSON\n",
            ":2: [api] vendordata_providers", "allowed: StaticJSON | DynamicJSON | a plugin's name",
        )

    def test_pluginNames(self) -> None:
        """A plugin's provider name and store NAME:ARG (or URL) are read as written."""
        path = self.writeConfig("[api]\nvendordata_providers = StaticJSON, MyVendor, DynamicJSON\n[mdsvc]\nstore = redis://db:6379/0\n")
        config = load_config(path)
        self.assertEqual(config.api.vendordata_providers, ("StaticJSON", "MyVendor", "DynamicJSON"))
        self.assertEqual(config.store, "redis://db:6379/0")

    def test_badEndpoint(self) -> None:
        """An endpoint that is not an endpoint string is refused with an example."""
        self.assertConfigError(
            "[mdsvc]\napi_endpoint = 8775\n", ":2: [mdsvc] api_endpoint = '8775'", "allowed: a Twisted endpoint string",
        )

    def test_endpointTwistedCannotMake(self) -> None:
        """An unknown endpoint type or argument is refused as Twisted would refuse it, in every option holding endpoints."""
        self.assertConfigError("[mdsvc]\napi_endpoint = tcp:abc\n", ":2: [mdsvc] api_endpoint = 'tcp:abc'",
                               "allowed: a Twisted endpoint string", "(invalid literal for int() with base 10: 'abc')")
        self.assertConfigError("[mdsvc]\nagent_endpoint = nosuch:1\n", ":2: [mdsvc] agent_endpoint", "(Unknown endpoint type: 'nosuch')")
        self.assertConfigError("[proxy]\nlisteners = network n1 tcp:1:bogus=2\n", ":2: [proxy] listeners", "allowed: lines of",
                               "unexpected keyword argument 'bogus'")

    def test_badStore(self) -> None:
        """A store that is neither nova nor NAME:ARG is refused, naming every kind."""
        rule = "allowed: sqlite:PATH | postgresql://USER:PASSWORD@HOST/DB | mysql+pymysql://USER:PASSWORD@HOST/DB | nova | a plugin's NAME:ARG"
        self.assertConfigError("[mdsvc]\nstore = /var/lib/x.sqlite\n", ":2: [mdsvc] store", rule)
        self.assertConfigError("[mdsvc]\nstore = sqlite:\n", ":2: [mdsvc] store", rule)
        self.assertConfigError("[mdsvc]\nstore = novas\n", ":2: [mdsvc] store", rule)

    def test_storeKinds(self) -> None:
        """
        Every kind of store is taken: sqlite:PATH (a relative PATH from the file's directory), a
        database server's URL and nova as written (a URL is never taken for a path), a plugin's
        NAME:ARG.
        """
        for written, loaded in (("sqlite:db/x.sqlite", "sqlite:DIR/db/x.sqlite"),
                                ("sqlite:/srv/x.sqlite", "sqlite:/srv/x.sqlite"),
                                ("postgresql://mdsvc:pw@db/mdsvc", "postgresql://mdsvc:pw@db/mdsvc"),
                                ("mysql+pymysql://mdsvc:pw@db/mdsvc", "mysql+pymysql://mdsvc:pw@db/mdsvc"),
                                ("nova", "nova"),
                                ("teststore:db/x.json", "teststore:db/x.json")):
            path = self.writeConfig(f"[mdsvc]\nstore = {written}\n")
            self.assertEqual(load_config(path).store, loaded.replace("DIR", os.path.dirname(os.path.abspath(path))))
            self.assertEqual(check_config(path), [])

    def test_legacyNameInError(self) -> None:
        """An error in a legacy option names it as written in the file."""
        self.assertConfigError("[DEFAULT]\nx = 1\nuse_forwarded_for = sure\n", ":3: [DEFAULT] use_forwarded_for = 'sure'", "true or false")

    def test_duplicateLineNumber(self) -> None:
        """With a duplicate option, the error names the line of the last one (the one used)."""
        self.assertConfigError("[api]\nmetadata_cache_expiration = 1\nmetadata_cache_expiration = x\n", ":3: [api] metadata_cache_expiration")

    def test_formFeedLineNumbers(self) -> None:
        """A form feed in a comment (an old page break) does not shift line numbers."""
        self.assertConfigError("[DEFAULT]\n# page\x0cbreak\n[api]\nmetadata_cache_expiration = x\n", ":4: [api] metadata_cache_expiration")
        path = self.writeConfig("# page\x0cbreak\n[api]\nnot an option\n")
        self.assertEqual(str(self.assertRaises(ConfigError, load_config, path)),
                         f"{path}:3: cannot parse this line (option \"not\"?): expected [section] or option = value")

    def test_unknownSubstitution(self) -> None:
        """A C{$name} naming nothing is an error naming the option."""
        self.assertConfigError("[api]\ndhcp_domain = $nowhere\n", ":2: [api] dhcp_domain", "$nowhere names no option")

    def test_selfSubstitution(self) -> None:
        """An option referring to itself is an error, not an endless loop."""
        self.assertConfigError("[DEFAULT]\nstate_path = $state_path/x\n", ":2: [DEFAULT] state_path", "$state_path refers to itself")

    def test_multilineValueQuoted(self) -> None:
        """A bad multi-line value is quoted so the message stays on one line."""
        self.assertConfigError("[api]\nmetadata_cache_expiration = 1\n  2\n", ":2: [api] metadata_cache_expiration = '1\\n2'")

    def test_unreadable(self) -> None:
        """A missing file is a one-line error naming it."""
        path = os.path.join(self.mktemp(), "missing.conf")
        e = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(str(e), f"{path}: cannot read: No such file or directory")
        self.assertEqual(check_config(path), [str(e)])

    def test_directory(self) -> None:
        """A directory is not a configuration file."""
        path = self.mktemp()
        os.makedirs(path)
        self.assertEqual(str(self.assertRaises(ConfigError, load_config, path)), f"{path}: cannot read: Is a directory")

    def test_notUtf8(self) -> None:
        """A file that is not UTF-8 is named."""
        path = self.writeConfig("")
        with open(path, "wb") as f:
            f.write(b"[api]\ndhcp_domain = \xff\n")
        self.assertEqual(str(self.assertRaises(ConfigError, load_config, path)), f"{path}: not UTF-8 text")

    def test_syntaxError(self) -> None:
        """A line that is neither an option nor a section header is named with its number."""
        path = self.writeConfig("[DEFAULT]\nstate_path = /x\n\n[api]\nthis is not an option\n")
        e = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(str(e), f"{path}:5: cannot parse this line (option \"this\"?): expected [section] or option = value")

    def test_syntaxErrorsAllListed(self) -> None:
        """check_config lists every syntax error, one line each."""
        path = self.writeConfig("[api]\nbad one\nx = 1\nbad two\n")
        self.assertEqual(
            check_config(path),
            [
                f"{path}:2: cannot parse this line (option \"bad\"?): expected [section] or option = value",
                f"{path}:4: cannot parse this line (option \"bad\"?): expected [section] or option = value",
            ],
        )

    def test_malformedSecretLineNotEchoed(self) -> None:
        """
        A secret option written without C{=} is named by its first word only: the value (the
        secret) never reaches the error, which ends up in logs and terminals.
        """
        path = self.writeConfig("[neutron]\nservice_metadata_proxy = true\nmetadata_proxy_shared_secret s3cr3t-value\n")
        e = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(
            str(e),
            f'{path}:3: cannot parse this line (option "metadata_proxy_shared_secret"?): expected [section] or option = value',
        )
        self.assertEqual(check_config(path), [str(e)])

    def test_malformedLineNeverEchoed(self) -> None:
        """
        No malformed line is echoed beyond its first word (a password continued on a line of
        its own, a URL holding credentials); a line of one word is not named at all.
        """
        path = self.writeConfig(
            "[DEFAULT]\nadmin_token rabbit-pw\n"
            "[database]\nconnection: mysql://nova:db-pw@controller/nova\n  continued\n"
            "[neutron]\npassword = first-part\nhunter2\n"
        )
        problems = check_config(path)
        self.assertEqual(
            problems,
            [
                f'{path}:2: cannot parse this line (option "admin_token"?): expected [section] or option = value',
                f"{path}:8: cannot parse this line: expected [section] or option = value",
            ],
        )
        for secret in ("rabbit-pw", "hunter2", "db-pw"):
            self.assertNotIn(secret, "\n".join(problems))

    def test_secretSubstitutionErrorNotEchoed(self) -> None:
        """A C{$} in a password that names no option is an error that does not quote the password."""
        message = self.assertConfigError("[neutron]\npassword = pa$sw0rd\n", ":2: [neutron] password")
        self.assertNotIn("sw0rd", message)
        self.assertIn("<secret>", message)
        self.assertIn("$$", message)

    def test_substitutedSecretNotEchoed(self) -> None:
        """A bad value made by substituting a secret shows the value as written, not the secret."""
        message = self.assertConfigError(
            "[DEFAULT]\ntransport_url = rabbit://nova:rabbit-pw@controller\n[api]\nmetadata_cache_expiration = $transport_url\n",
            ":4: [api] metadata_cache_expiration = '$transport_url': allowed: an integer >= 0",
        )
        self.assertNotIn("rabbit-pw", message)

    def test_secretSelfReferenceNotEchoed(self) -> None:
        """A password whose $ names the password itself is an error that does not quote it."""
        message = self.assertConfigError("[neutron]\npassword = x$password\n", ":2: [neutron] password = <secret>")
        self.assertNotIn("$password", message)

    def test_badSecretValueNotEchoed(self) -> None:
        """A bad value of an option holding a secret is shown as C{<secret>}, never as written."""
        from mdsvc import config

        def url(text: str) -> str:
            raise ValueError("allowed: a database URL such as mysql+pymysql://USER:PASSWORD@HOST/DB")

        extra = config.Option("database", "connection", url, None)
        self.patch(config, "OPTIONS", config.OPTIONS + (extra,))
        self.patch(config, "_BY_KEY", {**config._BY_KEY, ("database", "connection"): extra})
        message = self.assertConfigError(
            "[database]\nconnection = mysql://nova:db-pw@controller\n",
            ":2: [database] connection = <secret>: allowed: a database URL",
        )
        self.assertNotIn("db-pw", message)

    def test_secretNames(self) -> None:
        """Options whose names say they hold secrets are recognised; others are not."""
        from mdsvc.config import holds_secret

        for name in ("metadata_proxy_shared_secret", "password", "admin_passwd", "nova_client_priv_key", "auth_token",
                     "connection", "transport_url", "ovn_sb_private_key", "PASSWORD"):
            self.assertTrue(holds_secret(name), name)
        for name in ("debug", "state_path", "metadata_cache_expiration", "dhcp_domain", "username"):
            self.assertFalse(holds_secret(name), name)

    def test_missingSectionHeader(self) -> None:
        """An option before any section header is named with its line."""
        path = self.writeConfig("# comment\nstate_path = /x\n")
        e = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(str(e), f"{path}:2: expected a [section] header before the first option")


class CheckConfigTests(ConfigTestsMixin, SynchronousTestCase):
    """check_config reports every problem, one line each."""

    def test_everyProblem(self) -> None:
        """Three bad values give three lines, in option table order, each with its line number."""
        path = self.writeConfig(
            """\
            [neutron]
            service_metadata_proxy = perhaps
            [api]
            vendordata_dynamic_connect_timeout = 1
            [DEFAULT]
            metadata_listen_port = http
            """
        )
        self.assertEqual(
            check_config(path),
            [
                f"{path}:6: [DEFAULT] metadata_listen_port = 'http': allowed: an integer from 0 to 65535",
                f"{path}:4: [api] vendordata_dynamic_connect_timeout = '1': allowed: an integer >= 3",
                f"{path}:2: [neutron] service_metadata_proxy = 'perhaps': allowed: true or false",
            ],
        )

    def test_good(self) -> None:
        """A good file has no problems."""
        self.assertEqual(check_config(self.writeConfig("[DEFAULT]\nstate_path = /x\n[unrelated]\nfoo = $bar\n")), [])


class EncodingTests(ConfigTestsMixin, SynchronousTestCase):
    """Files written by Windows editors."""

    def test_byte_order_mark(self) -> None:
        """A UTF-8 byte-order mark before the first section is ignored."""
        path = self.writeConfig("[api]\ndhcp_domain = example.org\n")
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(b"\xef\xbb\xbf" + data)
        self.assertEqual(load_config(path).api.dhcp_domain, "example.org")


class SampleConfigTests(SynchronousTestCase):
    """The sample configs under etc/ are valid and name every option mdsvc reads."""

    def test_samples_valid(self) -> None:
        """check-config finds nothing wrong in any sample, and each loads."""
        import glob

        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        samples = sorted(glob.glob(os.path.join(root, "etc", "*.conf")))
        self.assertGreaterEqual(len(samples), 6)
        for path in samples:
            self.assertEqual(check_config(path), [], path)
            load_config(path)

    def test_all_in_one_names_every_option(self) -> None:
        """etc/all-in-one.conf sets or mentions every option of the table."""
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        with open(os.path.join(root, "etc", "all-in-one.conf")) as f:
            text = f.read()
        missing = [f"[{o.section}] {o.name}" for o in OPTIONS if not re.search(rf"^#?{o.name} =", text, re.M)]
        self.assertEqual(missing, [])


class MultipleFileTests(ConfigTestsMixin, SynchronousTestCase):
    """Several files make one configuration, as oslo.config reads them."""

    def files(self, *texts: str) -> list[str]:
        """One file per text, in order."""
        return [self.writeConfig(text, f"{i}.conf") for i, text in enumerate(texts)]

    def test_laterWinsOptionByOption(self) -> None:
        """A later file replaces the options it sets and leaves the others as earlier files set them."""
        config = load_config(self.files("[api]\ndhcp_domain = first\nmetadata_cache_expiration = 7\n",
                                        "[api]\ndhcp_domain = second\n"))
        self.assertEqual((config.api.dhcp_domain, config.api.cache_expiration), ("second", 7))

    def test_laterAliasWins(self) -> None:
        """A later file's older name wins over an earlier file's own name (only within one file does the own name win)."""
        config = load_config(self.files("[api]\ndhcp_domain = new-name\n", "[DEFAULT]\ndhcp_domain = later-file\n"))
        self.assertEqual(config.api.dhcp_domain, "later-file")

    def test_substitutionAcrossFiles(self) -> None:
        """A later file's C{$name} refers to an option set in an earlier file, known to the table or not."""
        config = load_config(self.files("[DEFAULT]\nbase = /srv\nstate_path = $base/mdsvc\n",
                                        "[mdsvc]\nstore = sqlite:$state_path/db.sqlite\n"))
        self.assertEqual((config.state_path, config.store), ("/srv/mdsvc", "sqlite:/srv/mdsvc/db.sqlite"))

    def test_substitutionUsesWinningValue(self) -> None:
        """C{$name} in an earlier file takes the value a later file gives the option it names."""
        config = load_config(self.files("[DEFAULT]\nstate_path = /early\n[api]\nvendordata_jsonfile_path = $state_path/v.json\n",
                                        "[DEFAULT]\nstate_path = /late\n"))
        self.assertEqual(config.api.vendordata_jsonfile_path, "/late/v.json")

    def test_errorNamesItsFile(self) -> None:
        """A bad value is named by the file and line it came from; one a later file replaces is not read."""
        first, second = self.files("[api]\nmetadata_cache_expiration = soon\ndhcp_domain = x\n",
                                   "[DEFAULT]\n\n[api]\nmetadata_cache_expiration = 3\ndhcp_domain = $nowhere\n")
        e = self.assertRaises(ConfigError, load_config, [first, second])
        self.assertEqual(str(e), f"{second}:5: [api] dhcp_domain: $nowhere names no option")
        self.assertEqual(check_config([first, second]), [str(e)])
        self.assertEqual(check_config([second, first]),
                         [f"{first}:2: [api] metadata_cache_expiration = 'soon': allowed: an integer >= 0"])

    def test_checkConfigEveryFile(self) -> None:
        """check_config lists the syntax errors of every file, and a file that cannot be read."""
        bad, worse = self.files("[api]\nnot an option\n", "[api]\nneither is this\n")
        missing = os.path.join(os.path.dirname(bad), "missing.conf")
        self.assertEqual(
            check_config([bad, missing, worse]),
            [
                f'{bad}:2: cannot parse this line (option "not"?): expected [section] or option = value',
                f"{missing}: cannot read: No such file or directory",
                f'{worse}:2: cannot parse this line (option "neither"?): expected [section] or option = value',
            ],
        )

    def test_sources(self) -> None:
        """The files read are the configuration's sources; source names them all, for messages."""
        first, second = self.files("", "")
        config = load_config([first, second])
        self.assertEqual((config.sources, config.source), ((first, second), f"{first}, {second}"))
        self.assertEqual(load_config(first).sources, (first,))

    def test_emptyListIsNotDefaults(self) -> None:
        """No file at all (None) turns the demo on; an empty list of files (an empty --config-dir) does not."""
        self.assertTrue(load_config(None).demo)
        config = load_config([])
        self.assertFalse(config.demo)
        self.assertEqual(config.sources, ())


class ConfigFilesTests(SynchronousTestCase):
    """Which files a command line names."""

    def directory(self, *names: str) -> str:
        """A directory holding empty files of these names."""
        path = os.path.abspath(self.mktemp())
        os.makedirs(path)
        for name in names:
            with open(os.path.join(path, name), "w"):
                pass
        return path

    def test_directoryAfterFiles(self) -> None:
        """The files come first, in order, then each directory's *.conf files in sorted order (hidden ones and others left out)."""
        from mdsvc.config import config_files

        d = self.directory("b.conf", "a.conf", ".hidden.conf", "c.conf.orig", "notes.txt")
        self.assertEqual(config_files(["z.conf", "y.conf"], [d]),
                         ["z.conf", "y.conf", os.path.join(d, "a.conf"), os.path.join(d, "b.conf")])

    def test_missingDirectory(self) -> None:
        """A directory that cannot be listed is a one-line error naming it."""
        from mdsvc.config import config_files

        missing = os.path.join(self.directory(), "nope")
        e = self.assertRaises(ConfigError, config_files, [], [missing])
        self.assertEqual(str(e), f"{missing}: cannot read: No such file or directory")

    def test_environment(self) -> None:
        """$MDSVC_CONFIG is one file, read only when the command line names none; without it, the defaults (None)."""
        from mdsvc.config import given_sources

        environ = {"MDSVC_CONFIG": "/etc/mdsvc/env.conf"}
        self.assertEqual(given_sources([], [], environ), ["/etc/mdsvc/env.conf"])
        self.assertEqual(given_sources(["a.conf"], [], environ), ["a.conf"])
        self.assertEqual(given_sources([], [self.directory()], environ), [])
        self.assertIsNone(given_sources([], [], {}))


class TableTests(SynchronousTestCase):
    """The option table fills every field of the configuration, once."""

    def test_everyDefaultParses(self) -> None:
        """Every default, written as in a file, parses with its option's own parser."""
        for option in OPTIONS:
            if option.default is not None:
                option.default_value()

    def test_destNamingNoField(self) -> None:
        """An option whose dest names no field of Config is an error, not a value dropped silently."""
        from mdsvc import config

        extra = config.Option("api", "extra", config.string, "x", dest="api.no_such_field")
        self.patch(config, "OPTIONS", config.OPTIONS + (extra,))
        e = self.assertRaises(TypeError, load_config, None)
        self.assertEqual(str(e), "no field of Config is named api.no_such_field")

    def test_fieldWithoutSource(self) -> None:
        """A field of Config that no option or derived value fills is an error naming it."""
        from mdsvc import config

        self.patch(config, "DERIVED", {k: v for k, v in config.DERIVED.items() if k != "agent.api_url"})
        e = self.assertRaises(TypeError, load_config, None)
        self.assertEqual(str(e), "no option or derived value fills agent.api_url")

    def test_fieldFilledTwice(self) -> None:
        """Two options (or an option and a derived value) filling one field is an error."""
        from mdsvc import config

        extra = config.Option("api", "extra", config.string, "x", dest="store")
        self.patch(config, "OPTIONS", config.OPTIONS + (extra,))
        e = self.assertRaises(TypeError, load_config, None)
        self.assertEqual(str(e), "two options or derived values fill store")

    def test_secretByName(self) -> None:
        """An option holds a secret exactly when its name says so (holds_secret: one rule for errors and tables)."""
        from mdsvc.config import holds_secret

        for option in OPTIONS:
            self.assertEqual(option.secret, holds_secret(option.name), option.key)
        secrets = {o.key for o in OPTIONS if o.secret}
        self.assertIn(("neutron", "metadata_proxy_shared_secret"), secrets)
        self.assertIn(("neutron", "password"), secrets)

    def test_sharedSecretFillsBoth(self) -> None:
        """The shared secret fills the API's and the agent's field from one option."""
        config = load_config(None, {("neutron", "metadata_proxy_shared_secret"): " s3 "})
        self.assertEqual((config.api.shared_secret, config.agent.shared_secret), (" s3 ", " s3 "))


class DerivedTests(ConfigTestsMixin, SynchronousTestCase):
    """Fields computed from several options."""

    def load(self, text: str):  # type: ignore[no-untyped-def]
        """The configuration of one file holding C{text}."""
        return load_config(self.writeConfig(text))

    def test_apiUrl(self) -> None:
        """The agent's API URL joins protocol, host (bracketed when IPv6) and port."""
        agent = self.load("[DEFAULT]\nnova_metadata_protocol = https\nnova_metadata_ip = fd00::5\nnova_metadata_port = 8443\n").agent
        self.assertEqual((agent.api_url, agent.api_host, agent.api_port), ("https://[fd00::5]:8443", "fd00::5", 8443))
        self.assertEqual(load_config(None).agent.api_url, "http://127.0.0.1:8775")

    def test_socketPath(self) -> None:
        """The agent's socket is $state_path/metadata_proxy unless metadata_proxy_socket says otherwise."""
        self.assertEqual(self.load("[DEFAULT]\nstate_path = /s\n").agent.socket_path, "/s/metadata_proxy")
        self.assertEqual(self.load("[DEFAULT]\nstate_path = /s\nmetadata_proxy_socket = /run/m.sock\n").agent.socket_path, "/run/m.sock")

    def test_ipVersion(self) -> None:
        """One IP version is the rate limit's; both (or none) give None: no limiting."""
        self.assertEqual(load_config(None).agent.rate_limit.ip_version, 4)
        self.assertEqual(self.load("[metadata_rate_limiting]\nip_versions = 6\n").agent.rate_limit.ip_version, 6)
        self.assertIsNone(self.load("[metadata_rate_limiting]\nip_versions = 4, 6\n").agent.rate_limit.ip_version)

    def test_agentEndpoint(self) -> None:
        """The agent's extra endpoint is empty unless [mdsvc] agent_endpoint sets one."""
        self.assertEqual(load_config(None).agent.listen_endpoint, "")
        self.assertEqual(self.load("[mdsvc]\nagent_endpoint = tcp:9697\n").agent.listen_endpoint, "tcp:9697")

    def test_demoExplicit(self) -> None:
        """[mdsvc] demo wins over the default of a file given (off) or not (on)."""
        self.assertTrue(self.load("[mdsvc]\ndemo = true\n").demo)
        self.assertFalse(load_config(None, {("mdsvc", "demo"): "false"}).demo)

    def test_emptyVendordataPath(self) -> None:
        """An empty vendordata_jsonfile_path is unset (None), as no option at all."""
        self.assertIsNone(self.load("[api]\nvendordata_jsonfile_path =\n").api.vendordata_jsonfile_path)


class VendorOptionsTests(ConfigTestsMixin, SynchronousTestCase):
    """A vendor plugin's own section, and where an option is set (for the plugin-name checks)."""

    def test_section(self) -> None:
        """The section's options as text: later files win option by option, $name is substituted, $$ is a dollar."""
        first = self.writeConfig("[DEFAULT]\nregion = r1\n[my_vendor]\ngreeting = hello\nurl = http://a/\n")
        second = self.writeConfig("[my_vendor]\nurl = http://b/$region/\nprice = 5$$\n")
        config = load_config([first, second])
        self.assertEqual(vendor_options(config, "my_vendor"), {"greeting": "hello", "url": "http://b/r1/", "price": "5$"})
        self.assertEqual(vendor_options(config, "nobody"), {})
        self.assertEqual(vendor_options(load_config(None), "my_vendor"), {})

    def test_bad_substitution(self) -> None:
        """A $name naming no option is one line naming the file and line."""
        path = self.writeConfig("[my_vendor]\n\nurl = http://$nowhere/\n")
        e = self.assertRaises(ConfigError, vendor_options, load_config(path), "my_vendor")
        self.assertEqual(str(e), f"{path}:3: [my_vendor] url: $nowhere names no option")

    def test_located(self) -> None:
        """The last file setting an option (under an older name too) and its line; else the files read."""
        first = self.writeConfig("[api]\nvendordata_providers = StaticJSON\n")
        second = self.writeConfig("\n[api]\n\nvendordata_providers = DynamicJSON\n[DEFAULT]\ndhcp_domain = x\n")
        config = load_config([first, second])
        self.assertEqual(located(config, "api", "vendordata_providers"), f"{second}:4: [api] vendordata_providers")
        self.assertEqual(located(config, "api", "dhcp_domain"), f"{second}:6: [DEFAULT] dhcp_domain")
        self.assertEqual(located(config, "mdsvc", "store"), f"{first}, {second}: [mdsvc] store")
        self.assertEqual(located(load_config(None), "mdsvc", "store"), "defaults: [mdsvc] store")


class RelativePathTests(ConfigTestsMixin, SynchronousTestCase):
    """A relative path in a file is taken from that file's directory, whatever the current one."""

    def load(self, text: str) -> tuple[str, object]:
        """(the file's directory, its configuration), read from another current directory."""
        path = os.path.abspath(self.writeConfig(text))
        here = os.getcwd()
        other = os.path.abspath(self.mktemp())
        os.makedirs(other)
        os.chdir(other)
        try:
            return os.path.dirname(path), load_config(path)
        finally:
            os.chdir(here)

    def test_statePath(self) -> None:
        """state_path, and the store and socket derived from it, are under the file's directory."""
        directory, config = self.load("[DEFAULT]\nstate_path = state\n")
        state = os.path.join(directory, "state")
        self.assertEqual((config.state_path, config.store, config.agent.socket_path),  # type: ignore[attr-defined]
                         (state, f"sqlite:{state}/mdsvc.sqlite", f"{state}/metadata_proxy"))

    def test_parentDirectory(self) -> None:
        """../ is taken from the file's directory too, and the path comes out normalised."""
        directory, config = self.load("[DEFAULT]\nstate_path = ../demo-state\n")
        self.assertEqual(config.state_path, os.path.join(os.path.dirname(directory), "demo-state"))  # type: ignore[attr-defined]

    def test_files(self) -> None:
        """Every option naming a file or directory; absolute and empty values stay as written."""
        directory, config = self.load(
            "[DEFAULT]\nmetadata_proxy_socket = run/agent.sock\nauth_ca_cert = ca.pem\nnova_client_cert = /etc/c.pem\n"
            "nova_client_priv_key =\n[api]\nvendordata_jsonfile_path = vd.json\nvendordata_dynamic_ssl_certfile = dyn/ca.pem\n"
            "[mdsvc]\nstore = sqlite:db/m.sqlite\nlookup = static:ports.yaml\n[proxy]\nnetns_dir = netns\n"
            "[neutron]\ncafile = n.pem\n[DEFAULT]\ninjected_network_template = t/interfaces.template\n"
        )
        here = lambda name: os.path.join(directory, name)  # noqa: E731
        c: object = config
        self.assertEqual(
            [c.agent.socket_path, c.agent.api_ca_cert, c.agent.api_client_cert, c.agent.api_client_key,  # type: ignore[attr-defined]
             c.api.vendordata_jsonfile_path, c.api.vendordata_dynamic_ssl_certfile, c.store, c.agent.lookup,  # type: ignore[attr-defined]
             c.proxy.netns_dir, c.agent.neutron.cafile, c.api.injected_network_template],  # type: ignore[attr-defined]
            [here("run/agent.sock"), here("ca.pem"), "/etc/c.pem", "", here("vd.json"), here("dyn/ca.pem"),
             f"sqlite:{here('db/m.sqlite')}", f"static:{here('ports.yaml')}", here("netns"), here("n.pem"),
             here("t/interfaces.template")],
        )

    def test_otherValuesAsWritten(self) -> None:
        """A store or lookup of another kind, and TCP endpoints, are not paths."""
        _, config = self.load("[mdsvc]\nstore = vendor:thing\nlookup = neutron\napi_endpoint = tcp:8775:interface=127.0.0.1\n")
        self.assertEqual((config.store, config.agent.lookup, config.api.listen_endpoint),  # type: ignore[attr-defined]
                         ("vendor:thing", "neutron", "tcp:8775:interface=127.0.0.1"))

    def test_unixEndpoints(self) -> None:
        """The socket file of a unix: endpoint (first field or address=), with its options kept and escapes made."""
        directory, config = self.load(
            "[mdsvc]\napi_endpoint = unix:api.sock:mode=660\nagent_endpoint = unix:mode=600:address=a\\:b.sock\n"
            "[proxy]\nlisteners = network n1 unix:p1.sock; router r1 tcp:9697\n  network n2 unix:/abs.sock\n"
        )
        escaped = directory.replace(":", "\\:").replace("=", "\\=")
        self.assertEqual(config.api.listen_endpoint, f"unix:{escaped}/api.sock:mode=660")  # type: ignore[attr-defined]
        self.assertEqual(config.agent.listen_endpoint, f"unix:mode=600:address={escaped}/a\\:b.sock")  # type: ignore[attr-defined]
        self.assertEqual([listener.endpoint for listener in config.proxy.listeners],  # type: ignore[attr-defined]
                         [f"unix:{escaped}/p1.sock", "tcp:9697", "unix:/abs.sock"])

    def test_substitutedFromAnotherFile(self) -> None:
        """$state_path set relative in one file is taken from that file's directory where another file names it."""
        first = os.path.abspath(self.writeConfig("[DEFAULT]\nstate_path = state\n"))
        second = os.path.abspath(self.writeConfig("[api]\nvendordata_jsonfile_path = $state_path/vd.json\n"))
        config = load_config([first, second])
        state = os.path.join(os.path.dirname(first), "state")
        self.assertEqual((config.state_path, config.api.vendordata_jsonfile_path), (state, f"{state}/vd.json"))

    def test_commandLineAsWritten(self) -> None:
        """A value given on a command line (an override) is left as written: the current directory's."""
        config = load_config(None, {("DEFAULT", "state_path"): "here"})
        self.assertEqual(config.state_path, "here")
