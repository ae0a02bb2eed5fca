# A static site fetched as a tarball and served by busybox httpd.
job "site" {
  datacenters = ["dc1"]

  group "site" {
    network {
      port "http" {}
    }

    task "httpd" {
      driver = "exec"

      artifact {
        source      = "https://releases.example.org/site-1.2.0.tar.gz"
        destination = "local/site"

        options {
          checksum = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
        }
      }

      artifact {
        source      = "https://releases.example.org/robots.txt"
        destination = "local/site/robots.txt"
        mode        = "file"
      }

      config {
        command = "/bin/busybox"
        args    = ["httpd", "-f", "-p", "${NOMAD_PORT_http}", "-h", "local/site"]
      }
    }
  }
}
